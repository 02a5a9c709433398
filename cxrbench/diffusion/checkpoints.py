"""Training checkpoints: write the whole training state every N steps, resume from the latest.

A checkpoint holds everything the next step depends on: the weights (UNet, a trainable text encoder,
the EMA), the optimizer, learning-rate schedule and gradient-scaler states, the batch sampler's
position in its epoch and the random generators of the draws, and the losses so far. Resuming from it
therefore continues exactly where the interrupted fit was: the final model is the one an uninterrupted
fit gives. As in diffusers' ``train_text_to_image.py``, checkpoints are folders ``checkpoint-<step>``;
the latest ``keep`` are kept. A folder appears complete or not at all (written under a temporary name,
then renamed), and only the main process of a multi-process run writes.

Each checkpoint carries a key of what the fit was asked to do (seed, budget, data, the trained weights'
names and shapes, the training settings); a checkpoint whose key differs from the current fit's is
never resumed from, and is removed when the current fit writes its first checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

PREFIX = "checkpoint-"
STATE_FILE = "training_state.pt"
INFO_FILE = "checkpoint.json"


class GeneratorState:
    """A ``torch.Generator`` seen through ``state_dict`` / ``load_state_dict``."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(state["state"])


def training_key(**identity: Any) -> str:
    """A short hash of what a fit was asked to do (JSON-serializable values)."""
    canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _step_of(path: Path) -> int | None:
    suffix = path.name.removeprefix(PREFIX)
    return int(suffix) if path.name.startswith(PREFIX) and suffix.isdigit() else None


def _info(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders under ``directory`` as (step, path), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(_step_of(p), p) for p in directory.iterdir() if p.is_dir()]
    return sorted((step, p) for step, p in found if step is not None and (p / STATE_FILE).is_file())


class TrainingCheckpoints:
    """Checkpoints of one fit under ``directory``: ``restore`` the latest matching one, ``after_step`` save.

    ``parts`` map names to objects with ``state_dict`` / ``load_state_dict`` (modules, optimizer,
    schedulers, ``GeneratorState``); the same names must be given to ``restore`` and ``after_step``.
    ``every``: save after every that many steps (None: never save, only resume). ``write``: whether this
    process writes (the main process of a run).
    """

    def __init__(self, directory: Path, key: str, every: int | None, keep: int = 2, write: bool = True) -> None:
        self.directory = Path(directory)
        self.key = key
        self.every = int(every) if every else None
        self.keep = max(1, int(keep))
        self.write = write
        self._cleaned = False

    def latest(self) -> tuple[int, Path] | None:
        """The latest complete checkpoint of this fit's key."""
        for step, path in reversed(list_checkpoints(self.directory)):
            info = _info(path)
            if info is not None and info.get("key") == self.key:
                return step, path
        return None

    def restore(self, parts: Mapping[str, Any]) -> tuple[int, list[float]]:
        """Load the latest matching checkpoint into ``parts``; (steps done, losses so far), (0, []) if none."""
        found = self.latest()
        if found is None:
            return 0, []
        step, path = found
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        return step, [float(v) for v in state["losses"]]

    def after_step(self, step: int, parts: Mapping[str, Any], losses: list[float]) -> Path | None:
        """Save when ``step`` (steps done) is a multiple of ``every``; return the folder written."""
        if not self.every or step % self.every or not self.write:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:  # checkpoints of other fits (other options, data or seed) would shadow ours
            for _, path in list_checkpoints(self.directory):
                if (_info(path) or {}).get("key") != self.key:
                    shutil.rmtree(path, ignore_errors=True)
            self._cleaned = True
        final = self.directory / f"{PREFIX}{step:08d}"
        tmp = self.directory / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        state = {"step": step, "losses": list(losses),
                 "parts": {name: part.state_dict() for name, part in parts.items()}}
        torch.save(state, tmp / STATE_FILE)
        (tmp / INFO_FILE).write_text(json.dumps({"step": step, "key": self.key}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        ours = [(s, p) for s, p in list_checkpoints(self.directory) if (_info(p) or {}).get("key") == self.key]
        for _, path in ours[:-self.keep]:
            shutil.rmtree(path, ignore_errors=True)
        return final
