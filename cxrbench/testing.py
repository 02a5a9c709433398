"""Helpers for plugin authors and for the core's own tests.

Check a model in a few lines::

    from cxrbench.testing import assert_model_compliant
    from my_plugin import MyModel

    def test_my_model_follows_the_contract():
        assert_model_compliant(MyModel)

``DummyModel`` is a tiny deterministic entry (class-mean images, box-prior maps) that runs in milliseconds;
the core's tests run the whole protocol with it.
"""

from __future__ import annotations

import tempfile
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from cxrbench.box_prior import class_box_priors
from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, QUERY_WORDS, Sample
from cxrbench.hookspecs import hookimpl
from cxrbench.model import (
    CAPABILITIES,
    GENERATE,
    LOCALIZE,
    ExtractionConfig,
    FitContext,
    LocalizationQuery,
    Model,
    ModelOptions,
    SamplerConfig,
    TrainingBudget,
    checked_maps,
)
from cxrbench.protocol import derive_seed


def label_of_prompt(prompt: str) -> str:
    """The first finding class whose query words occur in a non-negated sentence of ``prompt``."""
    for sentence in prompt.lower().split("."):
        if sentence.strip().startswith("no "):
            continue
        for label in FINDING_CLASSES:
            if any(word in sentence for word in QUERY_WORDS[label]):
                return label
    return NO_FINDING


class DummyOptions(ModelOptions):
    noise: float = 0.05


class DummyModel(Model):
    """Class-mean image generator and box-prior localizer: the smallest honest entry."""

    model_id = "dummy"
    capabilities = frozenset({GENERATE, LOCALIZE})
    Options = DummyOptions
    description = "Test model: per-class mean training image; the class's mean box mask as its map."

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        size = context.image_size
        self.means: dict[str, np.ndarray] = {}
        for label in (*FINDING_CLASSES, NO_FINDING):
            members = [s for s in train if label in s.labels]
            if members:
                self.means[label] = np.mean([s.image for s in members], axis=0).astype(np.float32)
        self.priors = class_box_priors(train, size)
        self.overall = np.mean([s.image for s in train], axis=0).astype(np.float32)
        for step in range(budget.steps):
            context.progress(step, {})

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], image_size: int,
                 sampler: SamplerConfig) -> np.ndarray:
        out = np.empty((len(prompts), image_size, image_size), dtype=np.float32)
        for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
            base = self.means.get(label_of_prompt(prompt), self.overall)
            noise = np.random.default_rng(seed).normal(0.0, self.options.noise, base.shape)
            out[i] = np.clip(base + noise, 0.0, 1.0)
        return out

    def localize(self, images: np.ndarray, queries: Sequence[LocalizationQuery],
                 extraction: ExtractionConfig) -> list[dict[str, np.ndarray]]:
        maps = []
        for image, query in zip(images, queries):
            prior = self.priors.get(query.label, np.ones_like(image, dtype=np.float32))
            maps.append({"word": prior, "eos": np.asarray(image, dtype=np.float32)})
        return maps

    def save(self, directory: Path) -> bool:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"mean/{k}": v for k, v in self.means.items()}
        arrays.update({f"prior/{k}": v for k, v in self.priors.items()})
        np.savez(directory / "dummy.npz", overall=self.overall, **arrays)
        return True

    def load(self, directory: Path) -> bool:
        path = directory / "dummy.npz"
        if not path.exists():
            return False
        with np.load(path) as data:
            self.overall = data["overall"]
            self.means = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("mean/")}
            self.priors = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("prior/")}
        return True


def plugin_for(*model_classes: type[Model]) -> object:
    """A plugin object that registers ``model_classes`` through the ``cxrbench_register_models`` hook."""

    @hookimpl
    def cxrbench_register_models(register):  # noqa: ANN001 - hook signature
        for cls in model_classes:
            register(cls)

    return types.SimpleNamespace(cxrbench_register_models=cxrbench_register_models, __name__="cxrbench.testing")


def registry_with(*model_classes: type[Model], name: str = "cxrbench-testing"):
    """A fresh registry (built-ins, installed plugins) plus ``model_classes`` registered as a plugin."""
    from cxrbench.registry import build_registry

    return build_registry(extra_plugins=((name, plugin_for(*model_classes)),))


def tiny_samples(n_train: int = 16, n_test: int = 4, image_size: int = 32, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    from cxrbench.data.synthcxr import SynthCXR

    data = SynthCXR(n_train=n_train, n_test=n_test, image_size=image_size, seed=seed)
    return data.split("train"), data.split("test")


def check_model(model_cls: type[Model], options: dict[str, Any] | None = None, image_size: int = 32,
                steps: int = 2) -> list[str]:
    """Every way ``model_cls`` breaks the model contract, as messages (empty: compliant).

    Fits on a tiny SynthCXR sample, then checks shapes, ranges, determinism and batch invariance of
    ``generate``, the maps of ``localize``, and a save/load round trip.
    """
    if not isinstance(model_cls, type) or not issubclass(model_cls, Model):
        return ["model class must subclass cxrbench.Model"]
    problems = _class_problems(model_cls)
    train, test = tiny_samples(image_size=image_size)
    budget = TrainingBudget(steps=steps, batch_size=4, unet_learning_rate=1e-3, text_encoder_learning_rate=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        model = model_cls(options or {})
        calls: list[int] = []
        model.fit(train, budget, FitContext(seed=0, workdir=Path(tmp) / "work", image_size=image_size,
                                            progress=lambda step, logs: calls.append(step)))
        if GENERATE in model_cls.capabilities:
            problems += _generate_problems(model, options, test, image_size, Path(tmp) / "saved")
        if LOCALIZE in model_cls.capabilities:
            problems += _localize_problems(model, test, image_size)
    return problems


def _class_problems(model_cls: type[Model]) -> list[str]:
    """What is wrong with the class itself: its id, capabilities and options."""
    problems: list[str] = []
    if not model_cls.model_id:
        problems.append("model_id must be a non-empty string")
    if not model_cls.capabilities or not set(model_cls.capabilities) <= CAPABILITIES:
        problems.append(f"capabilities must be a non-empty subset of {sorted(CAPABILITIES)}")
    try:
        model_cls({"__no_such_option__": 1})
        problems.append("Options must forbid unknown keys (subclass cxrbench.ModelOptions)")
    except ValidationError:
        pass
    return problems


def _generate_problems(model: Model, options: dict[str, Any] | None, test: list[Sample], image_size: int,
                       saved: Path) -> list[str]:
    """``generate`` of a fitted model: shape, range, determinism, batch invariance, and the images of the
    model saved to ``saved`` and loaded again."""
    prompts = [s.report for s in test[:3]]
    seeds = [derive_seed(0, s.id) for s in test[:3]]
    sampler = SamplerConfig(steps=4)
    images = np.asarray(model.generate(prompts, seeds, image_size, sampler))
    if images.shape != (3, image_size, image_size):
        return [f"generate returned shape {images.shape}, expected {(3, image_size, image_size)}"]
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        return ["generate must return finite values in [0, 1]"]
    problems = []
    again = np.asarray(model.generate(prompts, seeds, image_size, sampler))
    if not np.allclose(images, again, atol=1e-5):
        problems.append("generate is not deterministic for the same prompts and seeds")
    alone = np.asarray(model.generate(prompts[1:2], seeds[1:2], image_size, sampler))
    if not np.allclose(images[1], alone[0], atol=1e-4):
        problems.append("generate depends on the batch: (prompt, seed) alone differs from in a batch")
    if model.save(saved):
        fresh = type(model)(options or {})
        if not fresh.load(saved):
            problems.append("load returned False for a folder that save wrote")
        elif not np.allclose(np.asarray(fresh.generate(prompts, seeds, image_size, sampler)), images, atol=1e-4):
            problems.append("a saved and loaded model generates different images")
    return problems


def _localize_problems(model: Model, test: list[Sample], image_size: int) -> list[str]:
    """``localize`` of a fitted model on the first three queries of ``test``: one map set per query, each
    map as the runner requires."""
    from cxrbench.plan import localization_queries

    queries = localization_queries(test)[:3]
    if not queries:
        return []
    by_id = {s.id: s for s in test}
    images = np.stack([by_id[q.sample_id].image for q in queries])
    maps = model.localize(images, queries, ExtractionConfig(timesteps=(501, 101)))
    problems = []
    if len(maps) != len(queries):
        problems.append(f"localize returned {len(maps)} map sets for {len(queries)} queries")
    for q, group_maps in zip(queries, maps):
        try:  # the rule the runner applies to every map a plugin returns
            checked_maps(group_maps, (image_size, image_size))
        except ValueError as exc:
            problems.append(f"localize for {q.sample_id}: {exc}")
    return problems


def assert_model_compliant(model_cls: type[Model], options: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Raise AssertionError listing every contract problem of ``model_cls``."""
    problems = check_model(model_cls, options, **kwargs)
    assert not problems, f"{model_cls.__name__} breaks the cxrbench model contract:\n  - " + "\n  - ".join(problems)
