"""CheXpert (labels only, no boxes): dataset ``chexpert``.

Files read (under ``root``, the directory that holds ``train.csv``; ``.csv`` or ``.csv.gz``):

- ``train.csv`` (split ``train``) and ``valid.csv`` (split ``test``: CheXpert's radiologist-labelled
  validation set is the usual held-out evaluation set; ``validate`` is empty): Path, Frontal/Lateral and
  the 14 label columns (1.0 positive, 0.0 negative, -1.0 uncertain, empty unmentioned);
- the images at ``Path``, taken relative to ``root`` (``CheXpert-v1.0-small/train/...`` when ``root``
  holds the ``CheXpert-v1.0-small`` folder) or without its first component (``train/...`` when ``root``
  is that folder itself).

Frontal images only (``Frontal/Lateral`` is ``Frontal``). Findings: the labels that are 1.0 among the
eight classes (uncertain ones are not positive), no boxes; prompt built from them
(``"Cardiomegaly. Pleural effusion."``), ``"No acute cardiopulmonary process."`` when No Finding is 1.0. An
image with neither (only labels such as Support Devices or Fracture, or only uncertain ones) is left out
and counted in ``skipped``. Id ``chexpert-patientNNNNN-studyN-viewN_frontal``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from cxrbench.data.adapters import CHEXPERT_LABELS, RealDataset, label_findings, label_report
from cxrbench.data.adapters._images import ImageRef, LazySample, relpath
from cxrbench.data.adapters._tables import Table, find_table
from cxrbench.data.schema import FINDING_CLASSES, Sample
from cxrbench.errors import DataError

SPLIT_TABLES = (("train", "train.csv"), ("test", "valid.csv"))


def sample_id(path: str) -> str:
    """``chexpert-patient00001-study1-view1_frontal`` from a ``Path`` value."""
    parts = list(PurePosixPath(path.replace("\\", "/")).with_suffix("").parts)
    start = next((i for i, p in enumerate(parts) if p.startswith("patient")), 0)
    return "chexpert-" + "-".join(parts[start:])


class CheXpert(RealDataset):
    """CheXpert, read in place (see the module docstring and docs/datasets.md).

    Args:
        root: the directory that holds train.csv and valid.csv; None: ``CXRBENCH_CHEXPERT_ROOT``.
        image_size: side of the square images the samples have.
        max_samples: at most this many samples per split (the first by id); None: all.
    """

    name = "chexpert"
    env = "CXRBENCH_CHEXPERT_ROOT"
    contents = "train.csv, valid.csv and the JPEG images their Path column names"

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 max_samples: int | None = None) -> None:
        super().__init__(root, image_size, max_samples)

    def _image_path(self, value: str) -> list[Path]:
        rel = PurePosixPath(value.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            return []
        candidates = [self.root / rel]
        if len(rel.parts) > 1:
            candidates.append(self.root / PurePosixPath(*rel.parts[1:]))
        return candidates

    def _make(self, where: str, value: str, split: str, labels: frozenset[str]) -> Sample:
        candidates = self._image_path(value)
        if not candidates:
            raise DataError(f"{where}: column 'Path' is {value!r}; it must be a relative path inside "
                            f"the root")
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            others = f" (nor {candidates[1]})" if len(candidates) > 1 else ""
            raise DataError(f"{where}: image file {candidates[0]} not found{others}")
        try:
            nbytes = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{where}: cannot read image file {path} ({exc.strerror or exc})") from None
        findings = label_findings(labels)
        ref = ImageRef(path, relpath(path, self.root), nbytes, None, where)
        return LazySample(sample_id(value), None, label_report(findings), split, findings,
                          ref=ref, size=self.image_size)

    def _build(self, split: str) -> list[Sample]:
        entries: list[tuple[str, Any]] = []
        for name_split, name in SPLIT_TABLES:
            if name_split != split:
                continue
            table = Table(self._read(find_table(self.root, name, f"the CheXpert {split} labels")),
                          ("Path", "Frontal/Lateral", *CHEXPERT_LABELS))
            seen: dict[str, int] = {}
            for row in table.rows():
                value = row.text("Path")
                view = row.choice("Frontal/Lateral", ("Frontal", "Lateral"))
                labels = {c: row.label(c) for c in CHEXPERT_LABELS}
                sid = sample_id(value)
                if sid in seen:
                    raise row.error(f"image {value!r} appears again (first on line {seen[sid]})")
                seen[sid] = row.line
                if view != "Frontal":
                    self.skipped["lateral view"] += 1
                    continue
                positives = frozenset(c for c in FINDING_CLASSES if labels[c] == 1.0)
                if not positives and labels["No Finding"] != 1.0:
                    self.skipped["no positive label among the eight classes and No Finding not 1.0"] += 1
                    continue
                entries.append((sid, partial(self._make, row.where, value, split, positives)))
        return self._take(entries)


__all__ = ["CheXpert", "sample_id"]
