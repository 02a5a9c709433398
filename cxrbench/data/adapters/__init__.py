"""Adapters for the real chest X-ray datasets: read in place from a local root, yield ``Sample`` records.

=====================  ===================  ======================  =====================
dataset name           class                root variable           docs/datasets.md
=====================  ===================  ======================  =====================
``mimic-cxr+ms-cxr``   ``MimicCXR``         CXRBENCH_MIMIC_ROOT     MIMIC-CXR-JPG + MS-CXR
``chestx-ray14``       ``ChestXray14``      CXRBENCH_NIH_ROOT       NIH ChestX-ray14
``vindr-cxr``          ``VinDrCXR``         CXRBENCH_VINDR_ROOT     VinDr-CXR
``chexpert``           ``CheXpert``         CXRBENCH_CHEXPERT_ROOT  CheXpert
=====================  ===================  ======================  =====================

Every adapter has the interface of ``SynthCXR``: ``name``, ``params()``, ``split(name)`` (a list of samples
sorted by id; splits ``train``, ``validate`` and ``test``), ``fingerprint()``; and the options ``root``,
``image_size`` and ``max_samples`` (at most this many samples per split: the first ones by id). Images
are read when a sample's ``.image`` is used (``LazySample``); the tables are read and checked, and every
image file of a split is checked to exist, when ``split()`` is first called.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, QUERY_WORDS, Finding, Sample
from cxrbench.errors import DataError

#: The split names of the real datasets (SynthCXR has train and test only).
SPLITS: tuple[str, ...] = ("train", "validate", "test")

#: The sentence that states a finding in prompts built from labels (NIH, VinDr, CheXpert).
PHRASES: dict[str, str] = {
    "Atelectasis": "Atelectasis.",
    "Cardiomegaly": "Cardiomegaly.",
    "Consolidation": "Consolidation.",
    "Edema": "Pulmonary edema.",
    "Lung Opacity": "Lung opacity.",
    "Pleural Effusion": "Pleural effusion.",
    "Pneumonia": "Pneumonia.",
    "Pneumothorax": "Pneumothorax.",
}
#: The prompt of a study with no finding.
NORMAL_REPORT = "No acute cardiopulmonary process."

#: The 14 label columns of CheXpert and of MIMIC-CXR's CheXpert table.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)


def resolve_root(root: str | os.PathLike | None, env: str, dataset: str, contents: str) -> Path:
    """The data root: ``root`` if given, else the environment variable ``env``.

    Raises:
        DataError: when neither is set, or the directory does not exist; the message says which
            variable to set and what the directory must contain.
    """
    hint = f"set {env} (or pass root=...) to the directory that holds {contents}; see docs/datasets.md"
    if root is None or str(root) == "":
        root = os.environ.get(env) or None
        if root is None:
            raise DataError(f"dataset {dataset!r} reads the real data from disk: {hint}")
        source = f"{env}={root}"
    else:
        source = f"root={root}"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"dataset {dataset!r}: {source} is not a directory; {hint}")
    return path.resolve()


def check_options(dataset: str, image_size: Any, max_samples: Any) -> tuple[int, int | None]:
    checks = (("image_size", image_size, 16, False), ("max_samples", max_samples, 0, True))
    for arg, value, low, optional in checks:
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            extra = " or None" if optional else ""
            raise DataError(f"{dataset} {arg} must be an integer >= {low}{extra}, but got {value!r}")
    return int(image_size), (None if max_samples is None else int(max_samples))


def label_findings(labels: Iterable[str], boxes: dict[str, tuple] | None = None) -> tuple[Finding, ...]:
    """Findings of the given classes in ``FINDING_CLASSES`` order, each with its canonical phrase."""
    present = set(labels)
    boxes = boxes or {}
    return tuple(Finding(c, PHRASES[c], tuple(boxes.get(c, ()))) for c in FINDING_CLASSES if c in present)


def label_report(findings: tuple[Finding, ...]) -> str:
    """The prompt of label-derived findings: their phrases in order, or ``NORMAL_REPORT``."""
    return " ".join(f.phrase for f in findings) if findings else NORMAL_REPORT


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def phrase_in_report(report: str, label: str) -> str:
    """The first sentence of ``report`` that names ``label`` (its query words), else the canonical phrase."""
    if label == NO_FINDING:
        return NORMAL_REPORT
    words = QUERY_WORDS[label]
    for sentence in _SENTENCE.split(report):
        low = sentence.lower()
        if any(w in low for w in words):
            return sentence.strip()
    return PHRASES[label]


class RealDataset:
    """What the four adapters share: options, split checks and caching, skip counts and the fingerprint.

    A subclass sets ``name``, ``env`` and ``contents`` and implements ``_build(split)`` returning the
    split's samples (any order; the base sorts by id and applies ``max_samples`` through ``_take``).
    """

    name = ""
    version = "1"
    env = ""
    contents = ""
    #: Options that are paths on this machine: left out of the fingerprint (the files they name are in).
    path_options: tuple[str, ...] = ("root",)

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 max_samples: int | None = None) -> None:
        self.image_size, self.max_samples = check_options(self.name, image_size, max_samples)
        self.root = resolve_root(root, self.env, self.name, self.contents)
        self._cache: dict[str, list[Sample]] = {}
        #: Files read so far (annotation tables, image lists): hashed by ``fingerprint()``.
        self._tables: dict[str, Path] = {}
        #: Why rows or studies were left out, with counts (e.g. ``{"no IMPRESSION or FINDINGS": 3}``).
        self.skipped: Counter[str] = Counter()

    def params(self) -> dict[str, Any]:
        """The constructor arguments: ``type(ds)(**ds.params())`` builds the same dataset."""
        return {"root": str(self.root), "image_size": self.image_size, "max_samples": self.max_samples}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def _read(self, path: Path) -> Path:
        """Note that ``path`` is read (it goes into the fingerprint)."""
        try:
            key = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            key = Path(path).as_posix()
        self._tables[key] = Path(path)
        return path

    def split(self, split: str) -> list[Sample]:
        """All samples of ``split`` ("train", "validate" or "test"), sorted by id; built once and cached."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, but got {split!r}")
        if split not in self._cache:
            self._cache[split] = self._build(split)
        return self._cache[split]

    def _build(self, split: str) -> list[Sample]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _take(self, entries: Iterable[tuple[str, Callable[[], Sample | None]]]) -> list[Sample]:
        """Make samples from ``(id, make)`` pairs in id order until ``max_samples`` are made; ``make``
        returns None for an entry that is left out (it counts the reason in ``skipped``)."""
        out: list[Sample] = []
        seen: set[str] = set()
        for sid, make in sorted(entries, key=lambda e: e[0]):
            if self.max_samples is not None and len(out) >= self.max_samples:
                break
            if sid in seen:
                continue
            seen.add(sid)
            sample = make()
            if sample is not None:
                out.append(sample)
        return out

    def fingerprint(self) -> str:
        """SHA-256 hex of what the splits are made of; covers:

        - the adapter's name and version and its options (paths such as ``root`` excepted: the same
          data elsewhere gives the same fingerprint);
        - the bytes of every annotation table and list file read (as stored, a ``.gz`` compressed);
        - every sample of every split: id, split, prompt, findings (label, phrase, boxes in output
          pixels) and its image file's path relative to the root with its size in bytes.

        Image pixels are not read (that would take hours on MIMIC-CXR): an image replaced by another of
        exactly the same byte size is not noticed.
        """
        for split in SPLITS:
            self.split(split)
        options = {k: v for k, v in self.params().items() if k not in self.path_options}
        digest = hashlib.sha256(f"{self.name}|v{self.version}|{json.dumps(options, sort_keys=True)}".encode())
        from cxrbench.data.adapters._tables import hash_file

        for key in sorted(self._tables):
            digest.update(f"\0table|{key}|{hash_file(self._tables[key])}".encode())
        for split in SPLITS:
            for s in self._cache[split]:
                ref = getattr(s, "ref", None)
                image = f"{ref.relpath}|{ref.nbytes}" if ref is not None else "-"
                boxes = [[f.label, f.phrase, [[round(v, 4) for v in b.to_list()] for b in f.boxes]]
                         for f in s.findings]
                digest.update(f"\0sample|{split}|{s.id}|{s.report}|{json.dumps(boxes)}|{image}".encode())
        return digest.hexdigest()


def __getattr__(name: str) -> Any:
    """The adapter classes, imported on first use."""
    modules = {"MimicCXR": "mimic", "ChestXray14": "nih", "VinDrCXR": "vindr", "CheXpert": "chexpert"}
    if name in modules:
        import importlib

        return getattr(importlib.import_module(f"cxrbench.data.adapters.{modules[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MimicCXR", "ChestXray14", "VinDrCXR", "CheXpert", "RealDataset", "SPLITS", "PHRASES",
           "NORMAL_REPORT", "CHEXPERT_LABELS", "resolve_root", "label_findings", "label_report",
           "phrase_in_report"]
