"""The model contract: what a plugin implements to be fine-tuned, sampled and asked where a finding is.

A model never scores itself. The core hands it training samples and a budget (``fit``), prompts and
seeds (``generate``), and real test images with their reports and the words to ground (``localize``);
it returns arrays, and the core computes every metric.

Minimal model::

    class MyModel(cxrbench.Model):
        model_id = "my-model"
        capabilities = frozenset({"generate"})

        def fit(self, train, budget, context): ...
        def generate(self, prompts, seeds, image_size, sampler): ...

``localize`` (capability ``"localize"``) returns, per query, (H, W) maps of finite real floats (no NaN or
infinity, not complex). The core checks every output where it enters (``checked_maps``,
``checked_images``): numpy arrays or torch tensors (detached and copied to the CPU) of a real floating
dtype, of the expected shape, finite, and images in [0, 1]; a run whose outputs break this fails at that
stage with a message naming the model, the sample and the token group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from cxrbench.data.schema import Sample

GENERATE = "generate"
LOCALIZE = "localize"
CAPABILITIES = frozenset({GENERATE, LOCALIZE})

#: Token groups a localizing model may return maps for. ``word`` (the finding's query words) is
#: required; the others are the token diagnostics that explain the fidelity/interpretability trade-off.
TOKEN_GROUPS: tuple[str, ...] = ("word", "eos", "other_words", "all_tokens")


@dataclass(frozen=True)
class TrainingBudget:
    """Compute every entry of a track gets: optimizer steps x batch size, learning rates, schedule."""

    steps: int
    batch_size: int
    unet_learning_rate: float
    text_encoder_learning_rate: float
    weight_decay: float = 1e-2
    caption_dropout: float = 0.1
    warmup_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SamplerConfig:
    """How images are drawn: the named diffusers scheduler, its step count and guidance scale."""

    name: str = "ddim"
    steps: int = 25
    guidance_scale: float = 1.0
    eta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExtractionConfig:
    """How attention is read: training-schedule timesteps the real image is noised to (seed: the last 40
    of 50 DDIM steps), averaged together."""

    timesteps: tuple[int, ...]
    noise_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"timesteps": list(self.timesteps), "noise_seed": self.noise_seed}


@dataclass(frozen=True)
class PretrainedBase:
    """A track's pretrained starting point, shipped with cxrbench: a weights file under ``cxrbench/assets``
    (``weights``) with its manifest (``base.json`` beside it) and the sha256 the track expects.

    Part of a track's definition, so the track's hash changes with the base. ``cxrbench.pretrained``
    checks the file before a run and loads it; nothing is downloaded.
    """

    name: str
    weights: str
    sha256: str


@dataclass
class FitContext:
    """What ``fit`` gets besides data and budget: the seed, a private work folder and a progress hook.

    ``checkpoint_every``: a model that can checkpoint its training writes its state every that many steps
    under ``checkpoint_dir`` and, when fitted again with the same data, budget and seed, resumes from the
    latest one instead of starting over (None: no checkpoints). Resuming gives the same model as an
    uninterrupted fit. ``base``: the track's pretrained starting point, when it has one.
    """

    seed: int
    workdir: Path
    image_size: int
    progress: Callable[[int, dict[str, float]], None] = field(default=lambda step, logs: None)
    device: str = "cpu"
    checkpoint_every: int | None = None
    #: The track's pretrained base (its file already checked by the core), or None to train from scratch.
    #: A model that can start from it does (``cxrbench.diffusion.DiffusionModel`` loads its UNet).
    base: PretrainedBase | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Where training checkpoints go: ``workdir / "checkpoints"``."""
        return Path(self.workdir) / "checkpoints"


@dataclass(frozen=True)
class LocalizationQuery:
    """Ground one finding of one study: its report (the prompt), the phrase, the class and query words.

    ``query_words``: a prompt word matches when one of these is a case-insensitive substring of it
    (see ``cxrbench.data.schema.QUERY_WORDS``). When nothing matches, the model uses all prompt tokens
    except start/end for the ``word`` map.
    """

    sample_id: str
    report: str
    phrase: str
    label: str
    query_words: tuple[str, ...]


class ModelOptions(BaseModel):
    """Base of every model's options: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Model:
    """Base class of a benchmark entry. Subclass, set ``model_id`` and ``capabilities``, implement methods.

    ``localize`` returns, for each query, a dict from token group (see ``TOKEN_GROUPS``) to an (H, W)
    heatmap of finite real floats at the input image's resolution; ``word`` is required, other groups
    optional.
    ``generate`` returns float32 images (N, H, W) in [0, 1], one per (prompt, seed) pair; the same
    (prompt, seed) must give the same image whatever the batch it is in.
    ``save`` / ``load`` let an interrupted run resume without fitting again; models that do not
    implement them are fitted again on resume.
    """

    model_id: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[ModelOptions]] = ModelOptions
    description: ClassVar[str] = ""
    #: Non-empty for a reference baseline (e.g. the box prior) rather than a competing model: results record
    #: this label, and the leaderboard shows the entry under it, marked as a baseline and not ranked.
    baseline: ClassVar[str] = ""

    def __init__(self, options: ModelOptions | dict[str, Any] | None = None) -> None:
        if isinstance(options, ModelOptions):
            self.options = options
        else:
            self.options = self.Options(**(options or {}))

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        """Fine-tune on the training split within the budget. Default: nothing to train."""

    def generate(
        self, prompts: Sequence[str], seeds: Sequence[int], image_size: int, sampler: SamplerConfig
    ) -> np.ndarray:
        raise NotImplementedError(f"model {self.model_id!r} does not implement generate")

    def localize(
        self,
        images: np.ndarray,
        queries: Sequence[LocalizationQuery],
        extraction: ExtractionConfig,
    ) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError(f"model {self.model_id!r} does not implement localize")

    def save(self, directory: Path) -> bool:
        """Write fitted state to ``directory``; return False when the model cannot be saved."""
        return False

    def load(self, directory: Path) -> bool:
        """Restore fitted state written by ``save``; return False when there is nothing to restore."""
        return False

    def config(self) -> dict[str, Any]:
        """The options as recorded in results."""
        return self.options.model_dump(mode="json")


def real_float_array(value: Any) -> np.ndarray:
    """A plugin's output as a numpy array of real floats; a torch tensor is detached and copied to the CPU.

    Raises:
        ValueError: saying what it holds instead (complex numbers, integers, objects, ragged lists).
    """
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()  # bfloat16 has no numpy dtype
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"it is not an array ({exc})") from None
    if array.dtype.kind != "f":
        held = "complex numbers" if array.dtype.kind == "c" else "values"
        raise ValueError(f"it holds {held} of dtype {array.dtype}, but must hold real floats")
    return array


def _non_finite(array: np.ndarray) -> str | None:
    bad = int((~np.isfinite(array)).sum())
    return f"{bad} of its {array.size} values are NaN or infinite" if bad else None


def checked_maps(group_maps: Any, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """One query's maps from ``localize``, checked and as float32: a dict from token group (``TOKEN_GROUPS``,
    ``"word"`` required) to a finite real (H, W) map of the image's ``shape``.

    Raises:
        ValueError: naming the token group and what is wrong with its map.
    """
    if not isinstance(group_maps, Mapping):  # a ValueError as for every broken output: the caller names it
        raise ValueError(  # noqa: TRY004
            f"expected a dict from token group to map, but got {type(group_maps).__name__}")
    if "word" not in group_maps:
        raise ValueError(f"token group 'word' is required, but the maps are for {sorted(map(str, group_maps))}")
    checked: dict[str, np.ndarray] = {}
    for group, value in group_maps.items():
        if group not in TOKEN_GROUPS:
            raise ValueError(f"token group {group!r} is not one of {TOKEN_GROUPS}")
        try:
            array = real_float_array(value).astype(np.float32)
            if array.shape != tuple(shape):
                raise ValueError(f"its shape is {array.shape}, but the image's is {tuple(shape)}")
            problem = _non_finite(array)
            if problem:
                raise ValueError(problem)
        except ValueError as exc:
            raise ValueError(f"token group {group!r}: the map is invalid: {exc}") from None
        checked[group] = array
    return checked


def checked_images(images: Any, expected: tuple[int, int, int]) -> tuple[np.ndarray, int | None, str | None]:
    """Images from ``generate`` as float32, with the first image that breaks the contract and why.

    Returns ``(images, index, problem)``; ``index`` and ``problem`` are None when every image is finite and
    in [0, 1].

    Raises:
        ValueError: the whole output is wrong: not an array of real floats, or not of shape ``expected``.
    """
    array = real_float_array(images).astype(np.float32)
    if array.shape != tuple(expected):
        raise ValueError(f"its shape is {array.shape}, but {tuple(expected)} was asked for")
    for index, image in enumerate(array):
        problem = _non_finite(image)
        if problem is None and (image.min() < 0 or image.max() > 1):
            problem = f"its values span [{image.min():.4g}, {image.max():.4g}], outside [0, 1]"
        if problem:
            return array, index, problem
    return array, None, None
