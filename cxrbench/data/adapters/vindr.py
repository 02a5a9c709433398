"""VinDr-CXR: dataset ``vindr-cxr``, in the Kaggle or the PhysioNet layout.

Files read (under ``root``; tables as ``.csv`` or ``.csv.gz``):

- Kaggle layout (VinBigData competition): ``train.csv`` (image_id, class_name, class_id, rad_id, x_min,
  y_min, x_max, y_max; ``No finding`` rows have empty boxes) and the images ``train/IMAGE_ID.png`` (or
  ``.jpg``, ``.jpeg``) converted from DICOM. There are no labels for Kaggle's test images, so the labelled
  images are split by a hash of their id: ``test`` when the first 8 hex digits of ``sha256(image_id)``,
  read as a number, are below 20 % of ``16**8``; ``train`` otherwise (fixed, about 1 in 5).
- PhysioNet layout: ``annotations/annotations_train.csv`` and ``annotations/annotations_test.csv``
  (image_id, class_name, x_min, y_min, x_max, y_max; rad_id optional) for the splits ``train`` and
  ``test``, the images ``train/IMAGE_ID.png`` and ``test/IMAGE_ID.png`` (converted from the DICOM files),
  and, when present, ``annotations/image_labels_train.csv`` / ``image_labels_test.csv`` (image_id,
  Pneumonia, ...) for the image-level Pneumonia label.
- Optional ``train_meta.csv`` / ``test_meta.csv`` (image_id, dim0, dim1: the original DICOM rows and
  columns): needed when the images were resized, since the boxes are in the original pixels. Without it
  the image file's own size is the box frame.

Several radiologists annotate each training image: every box of every radiologist is kept, one finding
per class with all its boxes. An image is normal (prompt ``"No acute cardiopulmonary process."``) when all
its rows say ``No finding``. Classes: Atelectasis, Cardiomegaly, Consolidation, Edema, Lung Opacity and
Pneumothorax keep their names; Pleural effusion is Pleural Effusion; Infiltration is Lung Opacity (as the
CheXpert labeler counts infiltrates); Pneumonia comes from the image labels only. The other VinDr
classes (Aortic enlargement, Nodule/Mass, Pleural thickening, ...) are left out of the findings, and an
image with only such classes is left out and counted in ``skipped``; a class name that is not a VinDr
class is an error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cxrbench.data.adapters import RealDataset, label_findings, label_report
from cxrbench.data.adapters._images import (
    ImageRef, LazySample, box_problem, image_dims, relpath,
)
from cxrbench.data.adapters._tables import Row, Table, find_table
from cxrbench.data.schema import Sample
from cxrbench.errors import DataError

#: VinDr class -> benchmark class (None: a VinDr class outside the eight). Keys: the names of the
#: PhysioNet release (22 local labels and No finding); the Kaggle release uses the first 14 and No finding.
VINDR_CLASSES: dict[str, str | None] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Infiltration": "Lung Opacity",
    "Lung Opacity": "Lung Opacity",
    "Pleural effusion": "Pleural Effusion",
    "Pneumothorax": "Pneumothorax",
    "Aortic enlargement": None,
    "Calcification": None,
    "Clavicle fracture": None,
    "Emphysema": None,
    "Enlarged PA": None,
    "ILD": None,
    "Lung cavity": None,
    "Lung cyst": None,
    "Mediastinal shift": None,
    "Nodule/Mass": None,
    "Other lesion": None,
    "Pleural thickening": None,
    "Pulmonary fibrosis": None,
    "Rib fracture": None,
}
NO_FINDING_CLASS = "No finding"
#: class_id of the Kaggle release.
KAGGLE_CLASS_IDS: dict[str, int] = {
    "Aortic enlargement": 0, "Atelectasis": 1, "Calcification": 2, "Cardiomegaly": 3, "Consolidation": 4,
    "ILD": 5, "Infiltration": 6, "Lung Opacity": 7, "Nodule/Mass": 8, "Other lesion": 9,
    "Pleural effusion": 10, "Pleural thickening": 11, "Pneumothorax": 12, "Pulmonary fibrosis": 13,
    "No finding": 14,
}
_CANONICAL = {name.casefold(): name for name in [*VINDR_CLASSES, NO_FINDING_CLASS]}
_BOX = ("x_min", "y_min", "x_max", "y_max")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Fraction of the Kaggle layout's labelled images that the id hash puts in ``test``.
KAGGLE_TEST_FRACTION = 0.2


def kaggle_split(image_id: str) -> str:
    """``test`` or ``train`` for an image of the Kaggle layout (see the module docstring)."""
    value = int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16)
    return "test" if value < KAGGLE_TEST_FRACTION * 16**8 else "train"


@dataclass
class _Image:
    split: str
    folder: str
    table: Path
    line: int
    boxes: dict[str, list[tuple[float, float, float, float, int]]] = field(default_factory=dict)
    normal: bool = True
    pneumonia: bool = False


class VinDrCXR(RealDataset):
    """VinDr-CXR, read in place (see the module docstring and docs/datasets.md).

    Args:
        root: the dataset directory; None: the environment variable ``CXRBENCH_VINDR_ROOT``.
        image_size: side of the square images (and box coordinates) the samples have.
        max_samples: at most this many samples per split (the first by id); None: all.
    """

    name = "vindr-cxr"
    env = "CXRBENCH_VINDR_ROOT"
    contents = ("train.csv and train/IMAGE_ID.png (Kaggle layout), or "
                "annotations/annotations_{train,test}.csv and {train,test}/IMAGE_ID.png (PhysioNet layout, "
                "images converted from DICOM to PNG)")

    boxes_from_table = True

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 max_samples: int | None = None, resized_copy: bool | None = None) -> None:
        super().__init__(root, image_size, max_samples, resized_copy)
        self._entries: dict[str, list[tuple[str, Any]]] | None = None

    def layout(self) -> str:
        """``"physionet"`` when ``annotations/`` holds the annotation tables, else ``"kaggle"``."""
        ann = self.root / "annotations"
        if any((ann / f"annotations_train.csv{gz}").is_file() for gz in ("", ".gz")):
            return "physionet"
        if any((self.root / f"train.csv{gz}").is_file() for gz in ("", ".gz")):
            return "kaggle"
        raise DataError(f"{self.root}: neither train.csv (Kaggle layout) nor "
                        f"annotations/annotations_train.csv (PhysioNet layout) found; expected "
                        f"{self.contents}")

    # -- tables ------------------------------------------------------------------------------------

    def _canonical(self, row: Row) -> str:
        raw = row.text("class_name")
        name = _CANONICAL.get(raw.casefold())
        if name is None:
            known = ", ".join([*VINDR_CLASSES, NO_FINDING_CLASS])
            raise row.error(f"unknown VinDr class {raw!r} (known: {known})")
        if row.has("class_id") and name in KAGGLE_CLASS_IDS and row["class_id"] != "":
            raw_id = row["class_id"]
            if not raw_id.isdigit() or int(raw_id) != KAGGLE_CLASS_IDS[name]:
                raise row.error(f"class_id is {raw_id!r}, but {name!r} has class_id {KAGGLE_CLASS_IDS[name]}")
        return name

    def _read_annotations(self, path: Path, images: dict[str, _Image], split: str | None,
                          folder: str) -> None:
        table = Table(self._read(path), ("image_id", "class_name", *_BOX), "VinDr-CXR box annotations")
        for row in table.rows():
            image_id = row.text("image_id")
            name = self._canonical(row)
            image_split = split if split is not None else kaggle_split(image_id)
            image = images.get(image_id)
            if image is None:
                image = images[image_id] = _Image(image_split, folder, table.path, row.line)
            elif image.folder != folder:
                raise row.error(f"image {image_id!r} is also in {image.table.name} (line {image.line})")
            coords = [row[c] for c in _BOX]
            if name == NO_FINDING_CLASS:
                if any(coords):
                    raise row.error(f"a {NO_FINDING_CLASS!r} row must have empty x_min, y_min, x_max, y_max, "
                                    f"but they are {coords}")
                continue
            image.normal = False
            x0, y0, x1, y1 = (row.float(c) for c in _BOX)
            assert x0 is not None and y0 is not None and x1 is not None and y1 is not None
            if not (x1 > x0 and y1 > y0):
                raise row.error(f"the box [x_min={x0:g}, y_min={y0:g}, x_max={x1:g}, y_max={y1:g}] has a "
                                f"width or height that is not positive")
            self._add_box(image.boxes, VINDR_CLASSES, name, (x0, y0, x1 - x0, y1 - y0, row.line))

    def _read_image_labels(self, path: Path, images: dict[str, _Image]) -> None:
        table = Table(self._read(path), ("image_id", "Pneumonia"), "VinDr-CXR image labels")
        for row in table.rows():
            value = row.float("Pneumonia")
            if value not in (0.0, 1.0):
                raise row.error(f"column 'Pneumonia' is {row['Pneumonia']!r}, but it must be 0 or 1")
            image = images.get(row.text("image_id"))
            if image is not None and value == 1.0:
                image.pneumonia = True

    def _frames(self) -> dict[str, tuple[float, float, str]]:
        """``image_id -> (width, height, where)`` from the optional ``*_meta.csv`` tables."""
        frames: dict[str, tuple[float, float, str]] = {}
        for name in ("train_meta.csv", "test_meta.csv"):
            for path in (self.root / name, self.root / f"{name}.gz"):
                if path.is_file():
                    table = Table(self._read(path), ("image_id", "dim0", "dim1"), "original image sizes")
                    for row in table.rows():
                        frames[row.text("image_id")] = (row.positive("dim1"), row.positive("dim0"), row.where)
                    break
        return frames

    # -- samples -----------------------------------------------------------------------------------

    def _find_image(self, image_id: str, image: _Image, where: str) -> Path:
        folder = self.root / image.folder
        for ext in IMAGE_EXTENSIONS:
            path = folder / f"{image_id}{ext}"
            if path.is_file():
                return path
        dicom = folder / f"{image_id}.dicom"
        if dicom.is_file():
            raise DataError(f"{where}: {dicom} is a DICOM file; cxrbench reads PNG or JPEG: convert the "
                            f"images to {folder / image_id}.png (see docs/datasets.md)")
        raise DataError(f"{where}: image file {folder / image_id}.png not found (nor .jpg, .jpeg)")

    def _make(self, image_id: str, image: _Image, frames: dict[str, tuple[float, float, str]]) -> Sample:
        where = f"{image.table}, line {image.line}"
        path = self._find_image(image_id, image, where)
        try:
            nbytes = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{where}: cannot read image file {path} ({exc.strerror or exc})") from None
        if image_id in frames:
            width, height, frame_where = frames[image_id]
            size_from = f"the size in {frame_where}"
        else:
            width, height = image_dims(path, where)
            size_from = f"the size of {path.name}"
        moved = {}
        for label, boxes in image.boxes.items():
            for x, y, w, h, line in boxes:
                problem = box_problem(x, y, w, h, width, height)
                if problem:
                    raise DataError(f"{image.table}, line {line}: {problem} ({size_from})")
        ref = ImageRef(path, relpath(path, self.root), nbytes, (width, height), where)
        if image_id in frames:
            self._check_frame(ref)
        for label, boxes in image.boxes.items():
            moved[label] = self._move_boxes([b[:4] for b in boxes], (width, height))
        labels = set(image.boxes) | ({"Pneumonia"} if image.pneumonia else set())
        findings = label_findings(labels, moved)
        return LazySample(f"vindr-{image_id}", None, label_report(findings), image.split, findings,
                          ref=ref, size=self.image_size)

    def _all_entries(self) -> dict[str, list[tuple[str, Any]]]:
        if self._entries is not None:
            return self._entries
        images: dict[str, _Image] = {}
        if self.layout() == "physionet":
            ann = self.root / "annotations"
            for split in ("train", "test"):
                self._read_annotations(find_table(ann, f"annotations_{split}.csv", f"the {split} boxes"),
                                       images, split, split)
            for split in ("train", "test"):
                for path in (ann / f"image_labels_{split}.csv", ann / f"image_labels_{split}.csv.gz"):
                    if path.is_file():
                        self._read_image_labels(path, images)
                        break
        else:
            self._read_annotations(find_table(self.root, "train.csv", "the boxes"), images, None, "train")
        frames = self._frames()
        entries: dict[str, list[tuple[str, Any]]] = {"train": [], "validate": [], "test": []}
        for image_id, image in images.items():
            if not image.boxes and not image.pneumonia and not image.normal:
                self.skipped["only findings outside the eight classes"] += 1
                continue
            entries[image.split].append((f"vindr-{image_id}", partial(self._make, image_id, image, frames)))
        self._entries = entries
        return entries

    def _build(self, split: str) -> list[Sample]:
        return self._take(self._all_entries()[split])


__all__ = ["VinDrCXR", "VINDR_CLASSES", "KAGGLE_CLASS_IDS", "kaggle_split"]
