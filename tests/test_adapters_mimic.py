"""MIMIC-CXR-JPG + MS-CXR adapter: samples, splits, prompts, boxes after resize and crop, and every error."""

from __future__ import annotations

import gzip
import re
import shutil

import numpy as np
import pytest

from adapter_fixtures import (
    DICOM_A, DICOM_B, DICOM_D, DICOM_E, DICOM_F, MS_CXR_HEADER, MS_CXR_ROWS, make_mimic, mimic_image_path,
    region_mean, write_csv, write_ms_cxr,
)
from cxrbench.data import Dataset
from cxrbench.data.adapters import BOX_CROPPED, FINDING_CROPPED, MimicCXR
from cxrbench.data.adapters.mimic import report_prompt
from cxrbench.errors import DataError


@pytest.fixture
def root(tmp_path, monkeypatch):
    # The fixture's image of F is a half-size copy of its MS-CXR frame: declared as such.
    monkeypatch.setenv("CXRBENCH_RESIZED_COPY", "1")
    return make_mimic(tmp_path / "mimic")


def raises(match: str):
    return pytest.raises(DataError, match=match)


def ids(ds, split):
    return [s.id for s in ds.split(split)]


def test_splits_ids_prompts_and_labels(root):
    ds = MimicCXR(root, image_size=16)
    assert isinstance(ds, Dataset) and ds.name == "mimic-cxr+ms-cxr"
    # MS-CXR v1.0.0 has no split column: MIMIC's split file places D in test and F in train. E is a
    # training image of D's patient: left out. C's report has neither IMPRESSION nor FINDINGS.
    assert ids(ds, "train") == [f"mimic-cxr-{DICOM_A}", f"mimic-cxr-{DICOM_B}", f"ms-cxr-{DICOM_F}-0"]
    assert ids(ds, "test") == [f"ms-cxr-{DICOM_D}-0", f"ms-cxr-{DICOM_D}-1"]
    assert ds.split("validate") == []
    a, b, f = ds.split("train")
    assert a.report == "Small left pleural effusion. No pneumothorax."  # IMPRESSION, whitespace collapsed
    assert [(x.label, x.phrase, x.boxes) for x in a.findings] == [
        ("Pleural Effusion", "Small left pleural effusion.", ())]
    assert b.report == "The heart is enlarged. Lungs are clear."  # FINDINGS when there is no IMPRESSION
    assert b.labels == ("Cardiomegaly",)  # Edema -1.0 is not positive; Support Devices is not a class
    assert f.report == "Enlarged cardiac silhouette" and f.split == "train"
    assert ds.skipped["report without IMPRESSION or FINDINGS section"] == 1
    assert ds.skipped["not a frontal view (ViewPosition not PA or AP)"] == 1
    assert ds.skipped["patient with MS-CXR validate/test images"] == 1
    for s in ds.split("train") + ds.split("test"):
        assert s.image.shape == (16, 16) and s.image.dtype == np.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0


def test_ms_cxr_boxes_are_resized_and_cropped_with_the_image(root):
    ds = MimicCXR(root, image_size=16, resized_copy=True)  # F's file is a half-size copy
    pneumothorax, effusion = ds.split("test")
    # Frame 64 x 32 -> 16 px: s = 16 / 32 = 0.5, scaled 32 x 16, crop from ox = (32 - 16) / 2 = 8, oy = 0.
    # (40, 8, 16, 12) -> (40*0.5 - 8, 8*0.5, 8, 6) = (12, 4, 8, 6), clipped at x = 16 -> (12, 4, 4, 6).
    # (12, 4, 8, 8) -> (-2, 2, 4, 4) -> clipped (0, 2, 2, 4). The effusion box (4, 4, 8, 8) -> x in [-6, -2]:
    # cropped away, so that phrase keeps no box.
    assert pneumothorax.findings[0].label == "Pneumothorax"
    assert [b.to_list() for b in pneumothorax.findings[0].boxes] == [[12.0, 4.0, 4.0, 6.0], [0.0, 2.0, 2.0, 4.0]]
    assert effusion.findings[0].label == "Pleural Effusion" and effusion.findings[0].boxes == ()
    image = pneumothorax.image
    assert region_mean(image, (12, 4, 4, 6), inset=1) > 0.8 and image[12:, :10].mean() < 0.15
    # F: the box table's frame is 64 x 48, the file a 32 x 24 copy. s = 16 / 48, crop ox = (64/3 - 16) / 2.
    (finding,) = ds.split("train")[2].findings
    (box,) = finding.boxes
    assert box.to_list() == pytest.approx([24 / 3 - 8 / 3, 4.0, 8.0, 6.0])
    assert region_mean(ds.split("train")[2].image, box.to_list()) > 0.8
    # The effusion box that the crop removed, and its phrase left without boxes, are counted.
    assert ds.skipped[BOX_CROPPED] == 1 and ds.skipped[FINDING_CROPPED] == 1


def test_a_box_frame_other_than_the_image_size_is_refused_unless_declared_a_resized_copy(root, monkeypatch):
    f_image = re.escape(str(mimic_image_path(root, DICOM_F)))
    monkeypatch.delenv("CXRBENCH_RESIZED_COPY")
    with raises(rf"MS_CXR_Local_Alignment_v1.0.0.csv, line 5: the boxes refer to a 64 x 48 image, but "
                rf"{f_image} is 32 x 24; if the image files are a resized copy .*resized_copy=True"):
        MimicCXR(root, image_size=16).split("train")
    monkeypatch.setenv("CXRBENCH_RESIZED_COPY", "1")
    assert f"ms-cxr-{DICOM_F}-0" in [s.id for s in MimicCXR(root, image_size=16).split("train")]
    # The same aspect ratio but twice the frame: boxes drawn on this file would be read at the wrong scale.
    from adapter_fixtures import write_image

    write_image(mimic_image_path(root, DICOM_D), 128, 64)
    with raises(r"line 2: the boxes refer to a 64 x 32 image, but .* is 128 x 64"):
        MimicCXR(root, image_size=16, resized_copy=False).split("test")


def test_a_study_missing_from_the_label_table_is_left_out_and_counted(root):
    path = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    kept = [line for line in lines if ",57375967," not in line]  # B's study (report: "The heart is enlarged.")
    assert len(kept) == len(lines) - 1
    path.write_bytes(gzip.compress("".join(kept).encode()))
    ds = MimicCXR(root, image_size=16, resized_copy=True)
    ids = [s.id for s in ds.split("train")]
    assert f"mimic-cxr-{DICOM_B}" not in ids and f"mimic-cxr-{DICOM_A}" in ids
    assert ds.skipped["study not in mimic-cxr-2.0.0-chexpert.csv.gz"] == 1


def test_split_column_of_ms_cxr_v110_and_all_test_option(root):
    header = [*MS_CXR_HEADER, "split"]
    rows = [[*r, "val" if r[0] == DICOM_D else "test"] for r in MS_CXR_ROWS]
    (root / "MS_CXR_Local_Alignment_v1.0.0.csv").unlink()
    write_ms_cxr(root, rows, header, version="1.1.0")
    ds = MimicCXR(root, image_size=16)
    assert ids(ds, "validate") == [f"ms-cxr-{DICOM_D}-0", f"ms-cxr-{DICOM_D}-1"]
    assert ids(ds, "test") == [f"ms-cxr-{DICOM_F}-0"]
    assert ids(ds, "train") == [f"mimic-cxr-{DICOM_A}", f"mimic-cxr-{DICOM_B}"]
    everything = MimicCXR(root, image_size=16, ms_cxr_split="test", include_mimic_train=False)
    assert everything.split("train") == [] and len(everything.split("test")) == 3


def test_options_subset_and_params(root):
    ds = MimicCXR(root, image_size=16, include_mimic_train=False, max_samples=1)
    assert ids(ds, "train") == [f"ms-cxr-{DICOM_F}-0"] and ids(ds, "test") == [f"ms-cxr-{DICOM_D}-0"]
    again = MimicCXR(**ds.params())
    assert again.params() == ds.params() and ids(again, "test") == ids(ds, "test")
    assert MimicCXR(root, image_size=16, ms_cxr_csv="MS_CXR_Local_Alignment_v1.0.0.csv").split("test")
    with raises("image_size must be an integer >= 16"):
        MimicCXR(root, image_size=8)
    with raises("ms_cxr_split must be 'auto' or 'test'"):
        MimicCXR(root, ms_cxr_split="val")
    with raises("split must be one of"):
        ds.split("val")


def registered_datasets() -> dict:
    """What the built-in plugin registers (through its hook, without loading every plugin)."""
    from cxrbench import builtins
    from cxrbench.registry import FACTORY_NAME_PATTERN

    table: dict = {}
    builtins.cxrbench_register_datasets(table.__setitem__)
    assert all(FACTORY_NAME_PATTERN.match(name) for name in table)
    return table


def test_root_from_environment_and_registry(root, monkeypatch):
    from cxrbench.protocol import TRACKS

    table = registered_datasets()
    assert {"mimic-cxr+ms-cxr", "chestx-ray14", "vindr-cxr", "chexpert"} <= set(table)
    paper = TRACKS["paper"]
    assert paper.dataset.name == "mimic-cxr+ms-cxr" and paper.data_root_env == MimicCXR.env
    factory = table[paper.dataset.name]
    monkeypatch.delenv("CXRBENCH_MIMIC_ROOT", raising=False)
    with raises("set CXRBENCH_MIMIC_ROOT .*mimic-cxr-2.0.0-metadata.csv.gz"):
        factory(**paper.dataset.params)
    monkeypatch.setenv("CXRBENCH_MIMIC_ROOT", str(root / "nowhere"))
    with raises(r"CXRBENCH_MIMIC_ROOT=.*nowhere is not a directory"):
        factory(**paper.dataset.params)
    monkeypatch.setenv("CXRBENCH_MIMIC_ROOT", str(root))
    ds = factory(**paper.dataset.params)
    assert ds.image_size == 512 and ds.root == root.resolve()
    assert len(factory(image_size=16).split("test")) == 2


def test_fingerprint_covers_tables_and_image_list(root, tmp_path):
    fp = MimicCXR(root, image_size=16).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    assert MimicCXR(moved, image_size=16).fingerprint() == fp  # the root's path is not part of it
    assert MimicCXR(root, image_size=32).fingerprint() != fp
    with open(mimic_image_path(moved, DICOM_A), "ab") as f:  # one image changes size
        f.write(b"\0")
    assert MimicCXR(moved, image_size=16).fingerprint() != fp
    path = root / "mimic-cxr-2.0.0-chexpert.csv.gz"  # a label changes
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b",1.0,", b",0.0,", 1)))
    assert MimicCXR(root, image_size=16).fingerprint() != fp


def test_report_sections():
    assert report_prompt(" FINDINGS: Clear.\n IMPRESSION:\n\n No acute process.\n NOTIFICATION: Called.") == \
        "No acute process."
    assert report_prompt(" IMPRESSION:\n FINDINGS: Small effusion.") == "Small effusion."
    assert report_prompt("FINAL REPORT\n INDICATION: Cough.") is None


# -- malformed files: the error names the file, the line and the problem ------------------------------

def ms_rows_with(index: int, column: str, value: object) -> list[list[object]]:
    rows = [list(r) for r in MS_CXR_ROWS]
    rows[index][MS_CXR_HEADER.index(column)] = value
    return rows


@pytest.mark.parametrize("column, value, problem", [
    ("w", "-3", r"line 3: the box \[x=12, y=4, w=-3, h=8\] has a width or height that is not positive"),
    ("x", "abc", r"line 3: column 'x' is 'abc', not a number"),
    ("x", "300", r"line 3: the box \[x=300, y=4, w=8, h=8\] lies outside the 64 x 32 image"),
    ("h", "", r"line 3: column 'h' is empty, but a number is required"),
    ("category_name", "Nodule", r"line 3: column 'category_name' is 'Nodule', not one of the MS-CXR classes"),
    ("dicom_id", "ffffffff-unknown", r"line 3: dicom_id 'ffffffff-unknown' is not in mimic-cxr-2.0.0-metadata"),
])
def test_bad_ms_cxr_rows(root, column, value, problem):
    write_ms_cxr(root, ms_rows_with(1, column, value))
    with raises(re.escape(str(root / "MS_CXR_Local_Alignment_v1.0.0.csv")) + ", " + problem):
        MimicCXR(root, image_size=16).split("test")


def test_wrong_header_names_the_missing_columns(root):
    header = [c if c != "label_text" else "phrase" for c in MS_CXR_HEADER]
    write_ms_cxr(root, MS_CXR_ROWS, header)
    with raises(r"MS_CXR_Local_Alignment_v1.0.0.csv, line 1: the header lacks column\(s\) 'label_text'"):
        MimicCXR(root, image_size=16).split("test")
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id"], [[DICOM_A, 1, 2]])
    with raises(r"mimic-cxr-2.0.0-split.csv.gz, line 1: the header lacks column\(s\) 'split'"):
        MimicCXR(root, image_size=16).split("test")


def test_missing_image_and_missing_files(root):
    mimic_image_path(root, DICOM_B).unlink()
    with raises(re.escape(f"{root / 'mimic-cxr-2.0.0-metadata.csv.gz'}, line 4: image file") + ".*not found"):
        MimicCXR(root, image_size=16).split("train")
    mimic_image_path(root, DICOM_D).unlink()
    with raises(r"MS_CXR_Local_Alignment_v1.0.0.csv, line 2: image file .* not found"):
        MimicCXR(root, image_size=16).split("test")
    with raises(r"nothere.csv: file not found \(ms_cxr_csv"):
        MimicCXR(root, image_size=16, ms_cxr_csv="nothere.csv").split("test")
    (root / "MS_CXR_Local_Alignment_v1.0.0.csv").unlink()
    with raises(rf"{re.escape(str(root))}: no MS-CXR box table"):
        MimicCXR(root, image_size=16).split("test")
    (root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with raises(r"mimic-cxr-2.0.0-split.csv.gz: file not found \(nor mimic-cxr-2.0.0-split.csv\)"):
        MimicCXR(root, image_size=16).split("test")


def test_missing_report_and_bad_label(root):
    (root / "reports" / "files" / "p10" / "p10000764" / "s57375967.txt").unlink()
    with raises(r"metadata.csv.gz, line 4: report file .*s57375967.txt not found"):
        MimicCXR(root, image_size=16).split("train")
    path = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b",1.0,", b",yes,", 1)))
    (root / "reports" / "files" / "p10" / "p10000764" / "s57375967.txt").write_text(" IMPRESSION: Clear.")
    with raises(r"chexpert.csv.gz, line 2: column '\w[\w ]*' is 'yes'; a label must be 1.0, 0.0, -1.0 or empty"):
        MimicCXR(root, image_size=16).split("train")


def test_unreadable_image_and_other_frame(root):
    mimic_image_path(root, DICOM_D).write_bytes(b"not a jpeg")
    # An MS-CXR image is opened when its split is built (its size is checked against the box frame).
    with raises(re.escape(str(mimic_image_path(root, DICOM_D))) + r": cannot read image .*referenced by .*"
                r"MS_CXR_Local_Alignment_v1.0.0.csv, line 2"):
        MimicCXR(root, image_size=16).split("test")
    from adapter_fixtures import write_image

    write_image(mimic_image_path(root, DICOM_D), 32, 32)  # square file, 64 x 32 frame
    with raises(r"the boxes refer to a 64 x 32 image, but .* is 32 x 32 \(another aspect ratio"):
        MimicCXR(root, image_size=16, resized_copy=True).split("test")


def test_a_dicom_without_split_row_and_an_unknown_split(root):
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"],
              [[DICOM_A, 1, 2, "train"], [DICOM_E, 3, 4, "holdout"]])
    with raises(r"split.csv.gz, line 3: column 'split' is 'holdout', but it must be one of"):
        MimicCXR(root, image_size=16).split("test")
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"],
              [[DICOM_A, 1, 2, "train"]])
    with raises(rf"MS_CXR_Local_Alignment_v1.0.0.csv, line 2: dicom_id '{DICOM_D}' has no row in"):
        MimicCXR(root, image_size=16).split("test")


def test_lazy_samples_copy_and_pickle(root):
    import dataclasses
    import pickle

    sample = MimicCXR(root, image_size=16).split("test")[0]
    assert "LazySample" in repr(sample) and "image=" in repr(sample)
    image = sample.image
    image[:] = 0.0  # a copy: the next read is not affected
    assert sample.image.max() > 0.8
    stored = dataclasses.replace(sample, report="other")
    assert stored.report == "other" and np.array_equal(stored.image, sample.image)
    again = pickle.loads(pickle.dumps(sample))
    assert again.id == sample.id and np.array_equal(again.image, sample.image)


def test_geometry_example_of_the_docs():
    from pathlib import Path

    from cxrbench.data.adapters._images import crop_transform, transform_boxes

    text = (Path(__file__).resolve().parent.parent / "docs" / "datasets.md").read_text()
    assert "`s = 512 / 2544`, scaled 615.0 x 512, `ox = 51.52`" in text
    assert "`(1000, 800, 400, 300)` becomes `(149.7, 161.0, 80.5, 60.4)`" in text
    s, ox, oy = crop_transform(3056, 2544, 512)
    assert (round(3056 * s, 1), round(ox, 2), oy) == (615.0, 51.52, 0.0)
    (box,) = transform_boxes([(1000, 800, 400, 300)], (3056, 2544), 512)
    assert [round(v, 1) for v in box.to_list()] == [149.7, 161.0, 80.5, 60.4]
