"""MIMIC-CXR-JPG 2.x with the MS-CXR phrase-grounding boxes: dataset ``mimic-cxr+ms-cxr``.

Files read (under ``root``; ``.csv`` or ``.csv.gz`` for the MIMIC tables):

- ``mimic-cxr-2.0.0-metadata.csv.gz``: dicom_id, subject_id, study_id, ViewPosition (PA and AP are
  frontal views; the others are left out);
- ``mimic-cxr-2.0.0-split.csv.gz``: dicom_id, split (train / validate / test);
- ``mimic-cxr-2.0.0-chexpert.csv.gz``: subject_id, study_id and the 14 CheXpert labels (1.0 positive);
- ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg``: the images;
- ``reports/files/pXX/pSUBJECT/sSTUDY.txt`` (or ``files/pXX/pSUBJECT/sSTUDY.txt``): the reports;
- ``MS_CXR_Local_Alignment_v1.1.0.csv`` or ``v1.0.0`` (``ms_cxr_csv``, or found in ``root``,
  ``root/*/`` or ``root/ms-cxr/*/``): dicom_id, category_name, label_text, x, y, w, h, image_width,
  image_height[, split]; one row per box.

Samples:

- MS-CXR: one sample per (dicom_id, category_name, label_text): prompt = the phrase (label_text), one
  finding (category_name, the phrase, all its boxes moved from image_width x image_height to the square
  image). Split: MS-CXR's ``split`` column (v1.1.0; ``val`` is ``validate``), else MIMIC's split file;
  with ``ms_cxr_split="test"`` every MS-CXR sample is in ``test`` (the localization test set of the
  seed paper). Id ``ms-cxr-DICOM_ID-K`` (K: the phrase's order of appearance for that image, from 0).
- MIMIC (``include_mimic_train``): every frontal image of MIMIC's train split that is not an MS-CXR
  image and whose patient has no MS-CXR sample in ``validate`` or ``test``: prompt = the report's
  IMPRESSION section, else its FINDINGS section (a study with neither is left out and counted in
  ``skipped``); findings = the CheXpert labels that are 1.0 among the eight classes, without boxes,
  each stated by the first sentence of the prompt that names it. A study without a row in the CheXpert
  table is left out and counted (it has no labels, not "No Finding"). Id ``mimic-cxr-DICOM_ID``. MIMIC's
  validate and test images that are not in MS-CXR are not used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cxrbench.data.adapters import CHEXPERT_LABELS, RealDataset, phrase_in_report
from cxrbench.data.adapters._images import ImageRef, LazySample, box_problem, relpath
from cxrbench.data.adapters._tables import Row, Table, find_table
from cxrbench.data.schema import FINDING_CLASSES, Finding, Sample
from cxrbench.errors import DataError

METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv.gz"
MS_CXR_PATTERN = "MS_CXR_Local_Alignment_v*.csv"
FRONTAL = ("PA", "AP")
_MS_SPLITS = {"train": "train", "val": "validate", "validate": "validate", "test": "test"}
_MS_COLUMNS = ("dicom_id", "category_name", "label_text", "x", "y", "w", "h", "image_width", "image_height")

# A section header of a MIMIC-CXR report: an upper-case name at the start of a line, then a colon.
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ()/&,-]*[A-Z)])[ \t]*:", re.MULTILINE)


def report_sections(text: str) -> list[tuple[str, str]]:
    """``(NAME, text)`` of every upper-case ``NAME:`` section of a report, whitespace collapsed."""
    heads = list(_HEADER.finditer(text))
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out.append((m.group(1).strip(), " ".join(text[m.end():end].split())))
    return out


def report_prompt(text: str) -> str | None:
    """The prompt of a report: its IMPRESSION section, else FINDINGS (the last non-empty one of each),
    else None."""
    sections = report_sections(text)
    for names in (("IMPRESSION", "IMPRESSIONS"), ("FINDINGS", "FINDING")):
        found = [body for name, body in sections if name in names and body]
        if found:
            return found[-1]
    return None


@dataclass
class _Image:
    subject: str
    study: str
    view: str
    line: int


@dataclass
class _Phrase:
    dicom: str
    category: str
    text: str
    split: str
    frame: tuple[float, float]
    row: Row
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    id: str = ""


@dataclass
class _Index:
    metadata: Table
    images: dict[str, _Image]
    mimic_split: dict[str, str]
    phrases: list[_Phrase]


def _ms_cxr_box(row: Row, frames: dict[str, tuple[tuple[float, float], int]]
                ) -> tuple[str, str, tuple[float, float, float, float], tuple[float, float]]:
    """(class, phrase, box x, y, w, h, image frame) of an MS-CXR row, checked; ``frames`` holds the frame
    (and first line) of every image read so far, which all its rows must share."""
    dicom = row.text("dicom_id")
    category = row.text("category_name")
    if category not in FINDING_CLASSES:
        raise row.error(f"column 'category_name' is {category!r}, not one of the MS-CXR classes "
                        f"{list(FINDING_CLASSES)}")
    text = row.text("label_text")
    x, y = row.float("x"), row.float("y")
    w, h = row.float("w"), row.float("h")
    frame = (row.positive("image_width"), row.positive("image_height"))
    assert x is not None and y is not None and w is not None and h is not None
    problem = box_problem(x, y, w, h, *frame)
    if problem:
        raise row.error(problem)
    if dicom in frames and frames[dicom][0] != frame:
        raise row.error(f"image_width x image_height is {frame[0]:g} x {frame[1]:g}, but line "
                        f"{frames[dicom][1]} gives {frames[dicom][0][0]:g} x {frames[dicom][0][1]:g} "
                        f"for the same image")
    frames.setdefault(dicom, (frame, row.line))
    return category, text, (x, y, w, h), frame


class MimicCXR(RealDataset):
    """MIMIC-CXR-JPG 2.x + MS-CXR, read in place (see the module docstring and docs/datasets.md).

    Args:
        root: the MIMIC-CXR-JPG directory; None: the environment variable ``CXRBENCH_MIMIC_ROOT``.
        image_size: side of the square images (and box coordinates) the samples have.
        ms_cxr_csv: the MS-CXR box table (relative paths are relative to ``root``); None: the newest
            ``MS_CXR_Local_Alignment_v*.csv`` in ``root``, ``root/*/`` or ``root/ms-cxr/*/``.
        include_mimic_train: also yield MIMIC's training images with their report prompts in ``train``.
        ms_cxr_split: ``"auto"`` (MS-CXR's split column, else MIMIC's split file) or ``"test"`` (all
            MS-CXR samples in ``test``).
        max_samples: at most this many samples per split (the first by id); None: all.

    Raises:
        DataError: for a missing root, a missing or malformed file (naming the file, line and problem).
    """

    name = "mimic-cxr+ms-cxr"
    env = "CXRBENCH_MIMIC_ROOT"
    contents = (f"files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg, {METADATA}, {SPLIT_FILE}, {CHEXPERT}, "
                f"reports/files/pXX/pSUBJECT/sSTUDY.txt and MS_CXR_Local_Alignment_v1.1.0.csv (or v1.0.0)")
    path_options = ("root", "ms_cxr_csv", "resized_copy")
    boxes_from_table = True

    def __init__(self, root: str | os.PathLike | None = None, image_size: int = 512,
                 ms_cxr_csv: str | os.PathLike | None = None, include_mimic_train: bool = True,
                 ms_cxr_split: str = "auto", max_samples: int | None = None,
                 resized_copy: bool | None = None) -> None:
        super().__init__(root, image_size, max_samples, resized_copy)
        if not isinstance(include_mimic_train, bool):
            raise DataError(f"{self.name} include_mimic_train must be True or False, "
                            f"but got {include_mimic_train!r}")
        if ms_cxr_split not in ("auto", "test"):
            raise DataError(f"{self.name} ms_cxr_split must be 'auto' or 'test', but got {ms_cxr_split!r}")
        self.ms_cxr_csv = None if ms_cxr_csv is None else str(ms_cxr_csv)
        self.include_mimic_train = include_mimic_train
        self.ms_cxr_split = ms_cxr_split
        self._index_cache: _Index | None = None
        self._labels: dict[tuple[str, str], frozenset[str]] | None = None
        self._reports: dict[tuple[str, str], str | None] = {}

    def params(self) -> dict[str, Any]:
        return {"root": str(self.root), "image_size": self.image_size, "ms_cxr_csv": self.ms_cxr_csv,
                "include_mimic_train": self.include_mimic_train, "ms_cxr_split": self.ms_cxr_split,
                "max_samples": self.max_samples, "resized_copy": self.resized_copy}

    # -- tables ------------------------------------------------------------------------------------

    def ms_cxr_path(self) -> Path:
        """The MS-CXR table this dataset reads."""
        if self.ms_cxr_csv is not None:
            path = Path(self.ms_cxr_csv).expanduser()
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise DataError(f"{path}: file not found (ms_cxr_csv: the MS-CXR box table "
                                f"MS_CXR_Local_Alignment_v1.1.0.csv or v1.0.0)")
            return path
        found = [*self.root.glob(MS_CXR_PATTERN), *self.root.glob(f"*/{MS_CXR_PATTERN}"),
                 *self.root.glob(f"ms-cxr/*/{MS_CXR_PATTERN}")]

        def version(p: Path) -> tuple[int, ...]:
            m = re.search(r"_v(\d+)\.(\d+)\.(\d+)\.csv$", p.name)
            return tuple(int(g) for g in m.groups()) if m else (-1,)

        if not found:
            raise DataError(f"{self.root}: no MS-CXR box table ({MS_CXR_PATTERN}) in it, in its "
                            f"sub-directories or in ms-cxr/*/; put MS_CXR_Local_Alignment_v1.1.0.csv there "
                            f"or pass ms_cxr_csv=PATH")
        return sorted(found, key=lambda p: (tuple(-v for v in version(p)), str(p)))[0]

    def _index(self) -> _Index:
        if self._index_cache is not None:
            return self._index_cache
        metadata = Table(self._read(find_table(self.root, METADATA, "MIMIC-CXR-JPG image metadata")),
                         ("dicom_id", "subject_id", "study_id", "ViewPosition"))
        images: dict[str, _Image] = {}
        for row in metadata.rows():
            dicom = row.text("dicom_id")
            if dicom in images:
                raise row.error(f"dicom_id {dicom!r} appears again (first on line {images[dicom].line})")
            images[dicom] = _Image(str(row.integer("subject_id")), str(row.integer("study_id")),
                                   row["ViewPosition"], row.line)

        split_path = find_table(self.root, SPLIT_FILE, "MIMIC-CXR's train/validate/test split")
        split_table = Table(self._read(split_path), ("dicom_id", "split"))
        mimic_split = {row.text("dicom_id"): row.choice("split", ("train", "validate", "test"))
                       for row in split_table.rows()}
        phrases = self._ms_cxr_phrases(images, metadata.path.name, mimic_split, split_table.path.name)
        per_image: dict[str, int] = {}
        for phrase in phrases:  # order of first appearance in the file
            k = per_image.get(phrase.dicom, 0)
            per_image[phrase.dicom] = k + 1
            phrase.id = f"ms-cxr-{phrase.dicom}-{k}"
        self._index_cache = _Index(metadata, images, mimic_split, phrases)
        return self._index_cache

    def _ms_cxr_phrases(self, images: dict[str, _Image], metadata_name: str, mimic_split: dict[str, str],
                        split_name: str) -> list[_Phrase]:
        """The MS-CXR table's phrases, one per (image, class, text) with all its boxes, in order of first
        appearance; each row checked against the image metadata and its image's other rows."""
        ms = Table(self._read(self.ms_cxr_path()), _MS_COLUMNS, "MS-CXR boxes")
        has_split = "split" in ms.index
        groups: dict[tuple[str, str, str], _Phrase] = {}
        frames: dict[str, tuple[tuple[float, float], int]] = {}
        for row in ms.rows():
            dicom = row.text("dicom_id")
            if dicom not in images:
                raise row.error(f"dicom_id {dicom!r} is not in {metadata_name}")
            category, text, box, frame = _ms_cxr_box(row, frames)
            split = self._ms_cxr_split(row, dicom, has_split, mimic_split, split_name)
            key = (dicom, category, text)
            if key not in groups:
                groups[key] = _Phrase(dicom, category, text, split, frame, row)
            elif groups[key].split != split:
                raise row.error(f"split {split!r} differs from line {groups[key].row.line}'s "
                                f"{groups[key].split!r} for the same phrase")
            groups[key].boxes.append(box)
        return list(groups.values())

    def _ms_cxr_split(self, row: Row, dicom: str, has_split: bool, mimic_split: dict[str, str],
                      split_name: str) -> str:
        """The benchmark split of an MS-CXR row: ``test`` (``ms_cxr_split="test"``), else the table's
        split column, else MIMIC-CXR's split of the image."""
        if self.ms_cxr_split == "test":
            return "test"
        if has_split:
            raw = row["split"]
            if raw not in _MS_SPLITS:
                raise row.error(f"column 'split' is {raw!r}, but it must be one of "
                                f"['train', 'val', 'test']")
            return _MS_SPLITS[raw]
        if dicom in mimic_split:
            return mimic_split[dicom]
        raise row.error(f"dicom_id {dicom!r} has no row in {split_name} (and this "
                        f"MS-CXR table has no split column)")

    def _chexpert(self) -> dict[tuple[str, str], frozenset[str]]:
        """Positive labels among the eight classes (and No Finding) per (subject_id, study_id)."""
        if self._labels is None:
            table = Table(self._read(find_table(self.root, CHEXPERT, "MIMIC-CXR's CheXpert labels")),
                          ("subject_id", "study_id", *CHEXPERT_LABELS))
            labels = {}
            for row in table.rows():
                key = (str(row.integer("subject_id")), str(row.integer("study_id")))
                labels[key] = frozenset(c for c in CHEXPERT_LABELS if row.label(c) == 1.0)
            self._labels = labels
        return self._labels

    # -- samples -----------------------------------------------------------------------------------

    def _image_ref(self, dicom: str, image: _Image, frame: tuple[float, float] | None,
                   where: str) -> ImageRef:
        folder = self.root / "files" / f"p{image.subject[:2]}" / f"p{image.subject}" / f"s{image.study}"
        path = folder / f"{dicom}.jpg"
        try:
            nbytes = path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"{where}: image file {path} not found (dicom_id {dicom!r})") from None
        except OSError as exc:
            raise DataError(f"{where}: cannot read image file {path} ({exc.strerror or exc})") from None
        return ImageRef(path, relpath(path, self.root), nbytes, frame, where)

    def _ms_sample(self, phrase: _Phrase) -> Sample:
        index = self._index()
        ref = self._image_ref(phrase.dicom, index.images[phrase.dicom], phrase.frame, phrase.row.where)
        self._check_frame(ref)
        boxes = self._move_boxes(phrase.boxes, phrase.frame)
        finding = Finding(phrase.category, phrase.text, boxes)
        return LazySample(phrase.id, None, phrase.text, phrase.split, (finding,), ref=ref,
                          size=self.image_size)

    def _report(self, image: _Image, where: str) -> str | None:
        key = (image.subject, image.study)
        if key not in self._reports:
            rel = Path(f"p{image.subject[:2]}") / f"p{image.subject}" / f"s{image.study}.txt"
            candidates = [self.root / "reports" / "files" / rel, self.root / "files" / rel]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise DataError(f"{where}: report file {candidates[0]} not found (nor {candidates[1]})")
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise DataError(f"{path}: cannot read report ({exc.strerror or exc}) (for {where})") from None
            self._reports[key] = report_prompt(text)
        return self._reports[key]

    def _mimic_sample(self, dicom: str) -> Sample | None:
        index = self._index()
        image = index.images[dicom]
        where = f"{index.metadata.path}, line {image.line}"
        prompt = self._report(image, where)
        if prompt is None:
            self.skipped["report without IMPRESSION or FINDINGS section"] += 1
            return None
        positives = self._chexpert().get((image.subject, image.study))
        if positives is None:  # no labels: neither findings nor No Finding can be said of the study
            self.skipped[f"study not in {CHEXPERT}"] += 1
            return None
        ref = self._image_ref(dicom, image, None, where)
        findings = tuple(Finding(c, phrase_in_report(prompt, c)) for c in FINDING_CLASSES if c in positives)
        return LazySample(f"mimic-cxr-{dicom}", None, prompt, "train", findings, ref=ref,
                          size=self.image_size)

    def _build(self, split: str) -> list[Sample]:
        index = self._index()
        entries: list[tuple[str, Any]] = [(p.id, partial(self._ms_sample, p)) for p in index.phrases
                                          if p.split == split]
        if self.include_mimic_train and split == "train":
            ms_images = {p.dicom for p in index.phrases}
            held_out = {index.images[p.dicom].subject for p in index.phrases if p.split != "train"}
            for dicom, image in index.images.items():
                if image.view not in FRONTAL:
                    self.skipped["not a frontal view (ViewPosition not PA or AP)"] += 1
                elif index.mimic_split.get(dicom) != "train":
                    if dicom not in index.mimic_split:
                        raise DataError(f"{index.metadata.path}, line {image.line}: dicom_id {dicom!r} "
                                        f"has no row in {SPLIT_FILE}")
                elif dicom in ms_images:
                    self.skipped["MS-CXR image (an MS-CXR sample instead)"] += 1
                elif image.subject in held_out:
                    self.skipped["patient with MS-CXR validate/test images"] += 1
                else:
                    entries.append((f"mimic-cxr-{dicom}", partial(self._mimic_sample, dicom)))
        return self._take(entries)


__all__ = ["MimicCXR", "report_prompt", "report_sections"]
