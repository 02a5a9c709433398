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
are read when a sample's ``.image`` is used (``LazySample``); the tables are read and checked, every
image file of a split is checked to exist, and every image with boxes is opened to compare its size with
the box frame (``resized_copy``), when ``split()`` is first called. ``skipped`` counts everything left
out: rows, studies, findings and boxes, by reason.
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

from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, QUERY_WORDS, Box, Finding, Sample
from cxrbench.errors import DataError

#: Set to 1 to say that the image files are a resized copy of the dataset (the adapters' ``resized_copy``).
RESIZED_COPY_ENV = "CXRBENCH_RESIZED_COPY"
#: The registered names of the four adapters' datasets.
DATASET_NAMES: tuple[str, ...] = ("mimic-cxr+ms-cxr", "chestx-ray14", "vindr-cxr", "chexpert")

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
#: Reasons in ``RealDataset.skipped`` for what the centre crop removes.
BOX_CROPPED = "box removed by the centre crop"
FINDING_CROPPED = "finding whose boxes the centre crop all removed (kept without boxes: not localized)"
#: Reasons in ``RealDataset.skipped`` for findings and boxes of classes outside the eight.
BOX_OTHER_CLASS = "box of a class outside the eight"
FINDING_OTHER_CLASS = "finding of a class outside the eight (left out of its study's findings)"

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
    #: Options about this machine's copy of the data (its paths; whether it is a resized copy): left out
    #: of the fingerprint (the files they name, and the boxes in output pixels, are in it).
    path_options: tuple[str, ...] = ("root", "resized_copy")

    #: Whether a box table gives the pixel frame of its boxes (``resized_copy`` is then an option).
    boxes_from_table = False

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 max_samples: int | None = None, resized_copy: bool | None = None) -> None:
        self.image_size, self.max_samples = check_options(self.name, image_size, max_samples)
        if resized_copy is None:
            resized_copy = os.environ.get(RESIZED_COPY_ENV, "").strip().lower() in ("1", "true", "yes")
        if not isinstance(resized_copy, bool):
            raise DataError(f"{self.name} resized_copy must be True, False or None, but got {resized_copy!r}")
        self.resized_copy = resized_copy
        self.root = resolve_root(root, self.env, self.name, self.contents)
        self._cache: dict[str, list[Sample]] = {}
        #: Files read so far (annotation tables, image lists): hashed by ``fingerprint()``.
        self._tables: dict[str, Path] = {}
        #: What was left out, and why, with counts: rows and studies, findings, boxes
        #: (e.g. ``{"report without IMPRESSION or FINDINGS section": 3, BOX_CROPPED: 1}``).
        self.skipped: Counter[str] = Counter()

    def params(self) -> dict[str, Any]:
        """The constructor arguments: ``type(ds)(**ds.params())`` builds the same dataset."""
        params = {"root": str(self.root), "image_size": self.image_size, "max_samples": self.max_samples}
        if self.boxes_from_table:
            params["resized_copy"] = self.resized_copy
        return params

    def _add_box(self, boxes: dict[str, list[Any]], classes: dict[str, str | None], name: str, box: Any) -> None:
        """Add ``box``, of the dataset's class ``name``, to ``boxes`` under its benchmark class
        (``classes[name]``); a box of a class outside the eight is counted in ``skipped`` instead."""
        mapped = classes[name]
        if mapped is not None:
            boxes.setdefault(mapped, []).append(box)
        else:
            self.skipped[BOX_OTHER_CLASS] += 1

    def _move_boxes(self, boxes: list[tuple[float, float, float, float]],
                    frame: tuple[float, float]) -> tuple[Box, ...]:
        """``transform_boxes``, counting in ``skipped`` the boxes the centre crop removes and the
        findings it leaves without any box."""
        from cxrbench.data.adapters._images import transform_boxes

        moved = transform_boxes(boxes, frame, self.image_size)
        if len(moved) < len(boxes):
            self.skipped[BOX_CROPPED] += len(boxes) - len(moved)
            if not moved:
                self.skipped[FINDING_CROPPED] += 1
        return moved

    def _check_frame(self, ref: Any) -> None:
        """Refuse an image (``ImageRef``) whose size is not the pixel frame its box table gives; with
        ``resized_copy`` the image may be a scaled copy of the frame (same aspect ratio within 1 %)."""
        if ref.frame is None:
            return
        from cxrbench.data.adapters._images import BOX_TOLERANCE, image_dims

        width, height = image_dims(ref.path, ref.context)
        fw, fh = ref.frame
        if (width, height) == (fw, fh):
            return
        problem = (f"{ref.context}: the boxes refer to a {fw:g} x {fh:g} image, but {ref.path} is "
                   f"{width} x {height}")
        if not self.resized_copy:
            raise DataError(f"{problem}; if the image files are a resized copy of the dataset, pass "
                            f"resized_copy=True or set {RESIZED_COPY_ENV}=1 (see docs/datasets.md)")
        if abs((width / height) / (fw / fh) - 1.0) > BOX_TOLERANCE:
            raise DataError(f"{problem} (another aspect ratio: not a resized copy)")

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


__all__ = ["MimicCXR", "ChestXray14", "VinDrCXR", "CheXpert", "RealDataset", "DATASET_NAMES", "SPLITS",
           "PHRASES", "RESIZED_COPY_ENV",
           "BOX_CROPPED", "FINDING_CROPPED", "BOX_OTHER_CLASS", "FINDING_OTHER_CLASS",
           "NORMAL_REPORT", "CHEXPERT_LABELS", "resolve_root", "label_findings", "label_report",
           "phrase_in_report"]
