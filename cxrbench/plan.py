"""What a run of a track works on and what it is scored against, shared by every stage that needs it.

The track's data (:func:`load_track_data`, built once per process), the generation plan (which prompts,
how many images each, with which seeds: :func:`generation_plan`), the localization queries
(:func:`localization_queries`), and the scoring of a run's outputs against them (:func:`score_outputs`).
``cxrbench run``, ``cxrbench rescore``, ``cxrbench validate`` and ``cxrbench report`` all read them here,
so they agree on what a run did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrbench.data import describe_left_out, left_out
from cxrbench.data.schema import NO_FINDING, QUERY_WORDS, Sample
from cxrbench.distributed import on_main
from cxrbench.model import LocalizationQuery
from cxrbench.protocol import Track, derive_seed
from cxrbench.registry import Registry
from cxrbench.scoring import Scores, feature_extractors_to_run, score_fidelity, score_localization


@dataclass
class TrackData:
    name: str
    params: dict[str, Any]
    fingerprint: str
    train: list[Sample]
    test: list[Sample]
    #: What the dataset left out, and why (``cxrbench.data.left_out``); recorded in every result.
    left_out: dict[str, int] = field(default_factory=dict)


_DATA_CACHE: dict[str, TrackData] = {}


def load_track_data(track: Track, registry: Registry) -> TrackData:
    """The track's train and test samples (built once per process); prints what the dataset left out.

    The dataset gets ``track.dataset_arguments()``: its params, and the root named by the track's
    ``data_root_env`` variable when that is set."""
    arguments = track.dataset_arguments()
    key = json.dumps([track.dataset.name, arguments], sort_keys=True)
    if key not in _DATA_CACHE:
        dataset = registry.dataset(track.dataset.name).factory(**arguments)
        train, test = dataset.split("train"), dataset.split("test")
        fingerprint = dataset.fingerprint()  # builds every split: the left-out counts are complete after it
        data = TrackData(track.dataset.name, dict(track.dataset.params), fingerprint, train, test,
                         left_out(dataset))
        if data.left_out:
            on_main(lambda: print(describe_left_out(track.dataset.name, data.left_out), file=sys.stderr))
        _DATA_CACHE[key] = data
    return _DATA_CACHE[key]


def generation_plan(track: Track, test: Sequence[Sample], seed: int) -> tuple[list[str], list[int], np.ndarray, list[tuple[str, ...]]]:
    """Prompts (the first N test reports), per-image seeds, the prompt index of every image, prompted labels."""
    chosen = list(test[: track.prompts_for_generation])
    prompts, seeds, index = [], [], []
    for p, sample in enumerate(chosen):
        for k in range(track.samples_per_prompt):
            prompts.append(sample.report)
            seeds.append(derive_seed(seed, "generate", sample.id, k))
            index.append(p)
    return prompts, seeds, np.asarray(index, dtype=np.int64), [s.labels for s in chosen]


def localization_queries(test: Sequence[Sample]) -> list[LocalizationQuery]:
    """One query per (test sample, finding with boxes)."""
    queries = []
    for sample in test:
        for finding in sample.findings:
            if finding.label == NO_FINDING or not finding.boxes:
                continue
            queries.append(LocalizationQuery(sample.id, sample.report, finding.phrase, finding.label,
                                             QUERY_WORDS[finding.label]))
    return queries


def score_outputs(track: Track, data: TrackData, maps: list[dict[str, np.ndarray]] | None,
                  generated: tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]] | None, seed: int,
                  registry: Registry, feature_extractors: Sequence[str] | None = None) -> Scores:
    """Every metric of a run from its outputs: the maps of ``localization_queries(data.test)`` and the
    generated images with their prompt index and prompted labels (either None when the model lacks it)."""
    scores = Scores()
    if maps is not None:
        queries = localization_queries(data.test)
        score_localization(scores, queries, maps, {s.id: s for s in data.test}, seed, registry)
    if generated is not None:
        images, index, labels = generated
        real = np.stack([s.image for s in data.test])
        names = feature_extractors_to_run(registry.feature_extractors, track.feature_extractors, feature_extractors)
        extractors = {name: registry.feature_extractors[name].factory for name in names}
        score_fidelity(scores, real, images, index, labels, extractors, seed, registry)
    return scores
