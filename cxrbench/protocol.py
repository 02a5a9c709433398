"""Tracks: the standardized protocol. Every entry of a track gets the same data, compute and seeds.

A track fixes the dataset and its splits, image size, training budget, sampler, number of prompts and
samples per prompt, extraction timesteps and the seeds. Its definition is versioned and hashed; every
result carries the hash, and ``cxrbench validate`` rejects a result whose hash does not match.
Per-sample seeds derive from (global seed, sample id), so results do not depend on batch size,
process count or where a run was resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from cxrbench.errors import ProtocolError
from cxrbench.model import ExtractionConfig, PretrainedBase, SamplerConfig, TrainingBudget


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset and the parameters it is built with (sizes, resolution, seed)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Track:
    name: str
    version: str
    description: str
    dataset: DatasetSpec
    image_size: int
    budget: TrainingBudget
    sampler: SamplerConfig
    extraction: ExtractionConfig
    prompts_for_generation: int
    samples_per_prompt: int
    seeds: tuple[int, ...]
    runs_on: str = "cpu"
    #: Where the data must be on disk for tracks on real datasets (None: embedded data): the environment
    #: variable whose folder ``dataset_arguments`` passes to the dataset as its ``root``.
    data_root_env: str | None = None
    #: Feature extractors whose FID, KID, precision and recall every result of the track reports (one whose
    #: weights are missing is reported as unavailable). Optional extractors with configured weights are
    #: added (``cxrbench.scoring.feature_extractors_to_run``). Not hashed: they add metrics to a result
    #: without changing any other, so results with and without them stay comparable.
    feature_extractors: tuple[str, ...] = ("domain",)
    #: The pretrained base every entry fine-tunes from (None: entries train from scratch). Hashed: its
    #: sha256 is part of the track's definition.
    base: PretrainedBase | None = None

    def definition(self) -> dict[str, Any]:
        """The JSON-ready definition the hash is taken over (everything but ``feature_extractors``)."""
        d = asdict(self)
        d.pop("feature_extractors")
        if d["base"] is None:  # tracks without a base keep the definition (and hash) they had before bases
            d.pop("base")
        d["seeds"] = list(self.seeds)
        d["extraction"] = self.extraction.to_dict()
        return d

    def dataset_arguments(self) -> dict[str, Any]:
        """The keyword arguments the track's dataset factory is called with: ``dataset.params`` and, for a
        track that names ``data_root_env`` while that variable is set, ``root``: the folder it names. With
        the variable unset the dataset finds its data as it does on its own (a real dataset's error then
        names the variable to set). The root is this machine's, so it is in neither the hash nor results."""
        arguments = dict(self.dataset.params)
        root = os.environ.get(self.data_root_env) if self.data_root_env else None
        if root:
            arguments["root"] = root
        return arguments

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def derive_seed(global_seed: int, *keys: object) -> int:
    """A 31-bit seed from the global seed and keys (e.g. a sample id): stable on any machine."""
    text = "|".join([str(global_seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def last_ddim_timesteps(count: int = 40, ddim_steps: int = 50, total_train: int = 1000) -> tuple[int, ...]:
    """The last ``count`` of ``ddim_steps`` DDIM steps on a ``total_train``-step schedule, latest first
    (the defaults: the seed paper's extraction timesteps, 781 ... 1). More than ``ddim_steps`` asks for a
    finer DDIM grid."""
    ddim_steps = max(ddim_steps, count)
    stride = total_train // ddim_steps
    return tuple(sorted((i * stride + 1 for i in range(ddim_steps)), reverse=True)[-count:])


TRACKS: dict[str, Track] = {
    "smoke": Track(
        name="smoke",
        version="3",  # 3: SynthCXR v3 (positions as varied as in real films)
        description="Plugin compliance and the whole pipeline in seconds: tiny SynthCXR, a few dozen steps.",
        dataset=DatasetSpec("synthcxr", {"n_train": 48, "n_test": 16, "image_size": 32, "seed": 0}),
        image_size=32,
        budget=TrainingBudget(steps=30, batch_size=16, unet_learning_rate=1e-3, text_encoder_learning_rate=3e-5),
        sampler=SamplerConfig(name="ddim", steps=8, guidance_scale=1.0),
        extraction=ExtractionConfig(timesteps=(701, 501, 301, 101)),
        prompts_for_generation=8,
        samples_per_prompt=2,
        seeds=(0,),
    ),
    "default": Track(
        name="default",
        version="3",  # 3: fine-tunes the shipped base; SynthCXR v3; 400 steps, guidance 3, 4 low timesteps
        description=(
            "The main job on 2 CPU cores: SynthCXR 64 px; every entry fine-tunes the shipped pretrained base "
            "(a small UNet that draws chest films and grounds anatomy words, never shown a finding) for a "
            "fixed step budget; grounding with attention of 4 batched low-noise timesteps."
        ),
        # 200 test studies: more real images than the domain evaluator has feature dimensions (128), so
        # the FID covariance is full rank. 400 steps x 32: the learnable encoder's run fits 10 minutes on
        # 2 cores with generation at guidance 3. Steps, guidance and timesteps were chosen from measured
        # fine-tune curves from the base (docs/default-track.md).
        dataset=DatasetSpec("synthcxr", {"n_train": 1200, "n_test": 200, "image_size": 64, "seed": 0}),
        image_size=64,
        budget=TrainingBudget(steps=400, batch_size=32, unet_learning_rate=1e-3, text_encoder_learning_rate=3e-5),
        sampler=SamplerConfig(name="ddim", steps=25, guidance_scale=3.0),
        extraction=ExtractionConfig(timesteps=(340, 260, 180, 100)),
        prompts_for_generation=64,
        samples_per_prompt=4,
        seeds=(0, 1, 2),
        base=PretrainedBase(
            name="synthcxr-base-anatomy",
            weights="synthcxr-base-anatomy/unet.safetensors",
            sha256="a0393fdfdc9be414749ba6c718281ddb2a6c477f4a65959fae16ed678eb1dc21",
        ),
    ),
    "paper": Track(
        name="paper",
        version="1",
        description=(
            "The seed paper's setting: MIMIC-CXR-JPG + MS-CXR at 512 px, Stable Diffusion 2 base from a local "
            "diffusers folder, lr 5e-5, batch 256, 30k steps, last 40 of 50 DDIM steps for grounding."
        ),
        dataset=DatasetSpec("mimic-cxr+ms-cxr", {"image_size": 512}),
        image_size=512,
        budget=TrainingBudget(
            steps=30_000, batch_size=256, unet_learning_rate=5e-5, text_encoder_learning_rate=5e-5,
            caption_dropout=0.0,
        ),
        sampler=SamplerConfig(name="ddim", steps=75, guidance_scale=4.0),
        extraction=ExtractionConfig(timesteps=last_ddim_timesteps()),
        prompts_for_generation=5000,
        samples_per_prompt=4,
        seeds=(0,),
        runs_on="gpu",
        data_root_env="CXRBENCH_MIMIC_ROOT",
        feature_extractors=("domain", "inception", "xrv"),
    ),
}


def get_track(name: str) -> Track:
    try:
        return TRACKS[name]
    except KeyError:
        raise ProtocolError(f"track must be one of {sorted(TRACKS)}, but got {name!r}") from None
