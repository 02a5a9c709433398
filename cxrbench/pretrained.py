"""Pretrained bases that ship with cxrbench: found under ``cxrbench/assets``, checked against the sha256
their track expects, loaded without any network.

A base is a weights file (safetensors) and its manifest, ``base.json`` in the same folder, which records
what the weights are: the model options they fit (architecture, text encoder, prompt length), the image
size, the corpus they were pretrained on and how (``scripts/pretrain_base.py`` writes both).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cxrbench.errors import AssetUnavailable, DataError, ProtocolError
from cxrbench.model import PretrainedBase

ASSETS = Path(__file__).resolve().parent / "assets"
MANIFEST = "base.json"


def base_path(base: PretrainedBase) -> Path:
    """Where ``base``'s weights are: ``cxrbench/assets/<weights>``."""
    return ASSETS / base.weights


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_base(base: PretrainedBase, owner: str) -> Path:
    """The path of ``base``'s weights after checking that they are there and are the ones ``owner`` (a track,
    e.g. "track 'default' v3") expects. Raises AssetUnavailable when missing, ProtocolError when different."""
    path = base_path(base)
    if not path.is_file():
        raise AssetUnavailable(
            f"{owner} fine-tunes from the pretrained base {base.name!r}, but its weights are missing at {path}; "
            f"they ship with cxrbench (reinstall it), or scripts/pretrain_base.py makes them again"
        )
    found = file_sha256(path)
    if found != base.sha256:
        raise ProtocolError(
            f"{owner} expects the pretrained base {base.name!r} with sha256 {base.sha256}, but {path} has "
            f"sha256 {found}: these are other weights (retrained or edited); restore the shipped file"
        )
    return path


def base_manifest(base: PretrainedBase) -> dict[str, Any]:
    """The manifest beside ``base``'s weights (what they are and how they were made)."""
    path = base_path(base).parent / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise AssetUnavailable(f"the pretrained base {base.name!r} has no manifest at {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("options"), dict):
        raise DataError(f"{path}: must be a JSON object with an 'options' object (the model options it fits)")
    return manifest


def load_base_state(base: PretrainedBase, owner: str) -> dict[str, Any]:
    """``base``'s UNet weights (a state dict on the CPU), after ``check_base``."""
    from safetensors.torch import load_file

    return load_file(str(check_base(base, owner)), device="cpu")
