"""NIH ChestX-ray14: dataset ``chestx-ray14``.

Files read (under ``root``; tables as ``.csv`` or ``.csv.gz``):

- ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``): Image Index, Finding Labels (``|``
  separated);
- ``BBox_List_2017.csv``: header ``Image Index,Finding Label,Bbox [x,y,w,h],,,``, the box's x, y, w, h in
  the 3rd to 6th fields, in the pixels of the released 1024 x 1024 images;
- ``train_val_list.txt`` (split ``train``) and ``test_list.txt`` (split ``test``);
- images: ``images/*.png`` or ``images_*/images/*.png`` (the archives as unpacked, or Kaggle's layout).

Labels: Atelectasis, Cardiomegaly, Consolidation, Edema, Pneumonia and Pneumothorax keep their names;
Effusion is Pleural Effusion; Infiltration (Infiltrate in the box list) is Lung Opacity (the CheXpert
labeler that labels MIMIC-CXR counts infiltrates as Lung Opacity). Emphysema, Fibrosis, Hernia, Mass,
Nodule and Pleural_Thickening are NIH labels outside the eight classes: they are left out of the findings
(their boxes too), and an image with only such labels is left out and counted in ``skipped`` (it would
read as No Finding). A label that is not an NIH label is an error. The prompt is built from the findings
(``"Atelectasis. Pleural effusion."``), ``"No acute cardiopulmonary process."`` for No Finding.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from cxrbench.data.adapters import FINDING_OTHER_CLASS, RealDataset, label_findings, label_report
from cxrbench.data.adapters._images import ImageRef, LazySample, box_problem, relpath
from cxrbench.data.adapters._tables import Table, find_table, read_lines
from cxrbench.data.schema import Sample
from cxrbench.errors import DataError

DATA_ENTRY = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_LIST = "BBox_List_2017.csv"
SPLIT_LISTS = (("train", "train_val_list.txt"), ("test", "test_list.txt"))
#: Pixel frame of the box list: the released images are 1024 x 1024.
BOX_FRAME = (1024.0, 1024.0)

#: NIH label -> benchmark class (None: an NIH label outside the eight classes).
NIH_LABELS: dict[str, str | None] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Infiltration": "Lung Opacity",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Emphysema": None,
    "Fibrosis": None,
    "Hernia": None,
    "Mass": None,
    "Nodule": None,
    "Pleural_Thickening": None,
}
NO_FINDING_LABEL = "No Finding"
#: Labels of the box list (``Infiltrate`` there is ``Infiltration`` in the data entry table).
BOX_LABELS: dict[str, str | None] = {**NIH_LABELS, "Infiltrate": "Lung Opacity"}


class ChestXray14(RealDataset):
    """NIH ChestX-ray14, read in place (see the module docstring and docs/datasets.md).

    Args:
        root: the dataset directory; None: the environment variable ``CXRBENCH_NIH_ROOT``.
        image_size: side of the square images (and box coordinates) the samples have.
        max_samples: at most this many samples per split (the first by id); None: all.
    """

    name = "chestx-ray14"
    env = "CXRBENCH_NIH_ROOT"
    contents = ("Data_Entry_2017_v2020.csv (or Data_Entry_2017.csv), BBox_List_2017.csv, train_val_list.txt, "
                "test_list.txt and the PNG images under images/ or images_*/images/")

    boxes_from_table = True

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 max_samples: int | None = None, resized_copy: bool | None = None) -> None:
        super().__init__(root, image_size, max_samples, resized_copy)
        self._entries: dict[str, list[tuple[str, Any]]] | None = None
        self._images: dict[str, Path] | None = None

    def _image_index(self) -> dict[str, Path]:
        if self._images is None:
            folders = [self.root / "images", *sorted(self.root.glob("images_*/images"))]
            folders = [f for f in folders if f.is_dir()]
            if not folders:
                raise DataError(f"{self.root}: no image folder; expected images/ or images_*/images/ holding "
                                f"the PNG files")
            images: dict[str, Path] = {}
            for folder in folders:
                try:
                    with os.scandir(folder) as it:
                        for entry in it:
                            images.setdefault(entry.name, Path(entry.path))
                except OSError as exc:
                    raise DataError(f"{folder}: cannot list the image folder "
                                    f"({exc.strerror or exc})") from None
            self._images = images
        return self._images

    def _data_entry(self) -> Path:
        for name in DATA_ENTRY:
            for candidate in (self.root / name, self.root / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        raise DataError(f"{self.root / DATA_ENTRY[0]}: file not found (nor {DATA_ENTRY[1]}, nor their "
                        f".gz); it should hold the image labels (Image Index, Finding Labels)")

    def _boxes(self, known: dict[str, int]) -> dict[str, dict[str, list[tuple[float, ...]]]]:
        """Boxes per image and class (in the 1024-pixel frame) from the box list."""
        path = find_table(self.root, BBOX_LIST, "the boxes (Image Index, Finding Label, x, y, w, h)")
        table = Table(self._read(path), ("Image Index", "Finding Label"))
        if len(table.header) < 6 or not table.header[2].startswith("Bbox"):
            raise DataError(f"{table.path}, line 1: the header should be "
                            f"'Image Index,Finding Label,Bbox [x,y,w,h],,,' (the box in the 3rd to 6th "
                            f"fields), but it is {','.join(table.header)!r}")
        out: dict[str, dict[str, list[tuple[float, ...]]]] = {}
        for row in table.rows():
            if len(row.fields) < 6:
                raise row.error(f"the row has {len(row.fields)} fields; 6 are needed "
                                f"(image, label, x, y, w, h)")
            image = row.text("Image Index")
            label = row.text("Finding Label")
            if label not in BOX_LABELS:
                raise row.error(f"unknown NIH finding label {label!r} "
                                f"(known: {', '.join(sorted(BOX_LABELS))})")
            if image not in known:
                raise row.error(f"image {image!r} is not in {self._data_entry().name}")
            x, y, w, h = (row.float(c, value=row.at(i)) for i, c in enumerate(("x", "y", "w", "h"), start=2))
            problem = box_problem(x, y, w, h, *BOX_FRAME)  # type: ignore[arg-type]
            if problem:
                raise row.error(problem)
            self._add_box(out.setdefault(image, {}), BOX_LABELS, label, (x, y, w, h))
        return out

    def _splits(self) -> dict[str, str]:
        where: dict[str, tuple[str, Path, int]] = {}
        for split, name in SPLIT_LISTS:
            path = self._read(self.root / name)
            for line, image in read_lines(path, f"the image names of the {split} split, one a line"):
                if image in where and where[image][0] != split:
                    other = where[image]
                    raise DataError(f"{path}, line {line}: image {image!r} is also in {other[1].name} "
                                    f"(line {other[2]})")
                where.setdefault(image, (split, path, line))
        return {image: v[0] for image, v in where.items()}

    def _make(self, where: str, image: str, split: str, mapped: set[str],
              boxes: dict[str, list[tuple[float, ...]]]) -> Sample:
        path = self._image_index().get(image)
        if path is None:
            raise DataError(f"{where}: image file {image!r} not found under {self.root / 'images'} or "
                            f"{self.root / 'images_*' / 'images'}")
        try:
            nbytes = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{where}: cannot read image file {path} ({exc.strerror or exc})") from None
        ref = ImageRef(path, relpath(path, self.root), nbytes, BOX_FRAME if boxes else None, where)
        self._check_frame(ref)
        moved = {c: self._move_boxes(b, BOX_FRAME) for c, b in boxes.items()}  # type: ignore[arg-type]
        findings = label_findings(mapped, moved)
        return LazySample(f"nih-{Path(image).stem}", None, label_report(findings), split, findings,
                          ref=ref, size=self.image_size)

    def _all_entries(self) -> dict[str, list[tuple[str, Any]]]:
        if self._entries is not None:
            return self._entries
        table = Table(self._read(self._data_entry()), ("Image Index", "Finding Labels"), "the image labels")
        rows: dict[str, int] = {}
        labels: dict[str, frozenset[str]] = {}
        for row in table.rows():
            image = row.text("Image Index")
            if image in rows:
                raise row.error(f"image {image!r} appears again (first on line {rows[image]})")
            names = frozenset(n.strip() for n in row.text("Finding Labels").split("|") if n.strip())
            unknown = sorted(names - set(NIH_LABELS) - {NO_FINDING_LABEL})
            if unknown:
                raise row.error(f"unknown NIH finding label {unknown[0]!r} in {row['Finding Labels']!r} "
                                f"(known: {', '.join(sorted(NIH_LABELS))}, {NO_FINDING_LABEL})")
            rows[image] = row.line
            labels[image] = names
        boxes = self._boxes(rows)
        splits = self._splits()
        entries: dict[str, list[tuple[str, Any]]] = {"train": [], "validate": [], "test": []}
        for image, line in rows.items():
            split = splits.get(image)
            if split is None:
                self.skipped["in neither train_val_list.txt nor test_list.txt"] += 1
                continue
            image_boxes = boxes.get(image, {})
            mapped = {NIH_LABELS[n] for n in labels[image] if NIH_LABELS.get(n)} | set(image_boxes)
            if not mapped and NO_FINDING_LABEL not in labels[image]:
                self.skipped["only labels outside the eight classes"] += 1
                continue
            self.skipped[FINDING_OTHER_CLASS] += sum(1 for n in labels[image] if n in NIH_LABELS
                                                     and NIH_LABELS[n] is None)
            make = partial(self._make, f"{table.path}, line {line}", image, split, mapped, image_boxes)
            entries[split].append((f"nih-{Path(image).stem}", make))
        self._entries = entries
        return entries

    def _build(self, split: str) -> list[Sample]:
        return self._take(self._all_entries()[split])


__all__ = ["ChestXray14", "NIH_LABELS", "BOX_LABELS", "BOX_FRAME"]
