"""NIH ChestX-ray14 adapter: the odd box-list header, label mapping, splits, boxes, errors; real rows."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from adapter_fixtures import (
    BBOX_HEADER, DATA_ENTRY_HEADER, NIH_IMAGES, data_entry_row, make_nih, read_real_rows, real_header_line,
    region_mean, write_csv, write_image, xrv_table,
)
from cxrbench.data.adapters import BOX_OTHER_CLASS, FINDING_OTHER_CLASS, RESIZED_COPY_ENV, ChestXray14
from cxrbench.data.adapters._tables import Table
from cxrbench.errors import DataError


@pytest.fixture
def root(tmp_path, monkeypatch):
    # The fixture's images are 64 px copies of the 1024 px frame of the box list: declared as such.
    monkeypatch.setenv(RESIZED_COPY_ENV, "1")
    return make_nih(tmp_path / "nih")


def raises(match: str):
    return pytest.raises(DataError, match=match)


def test_samples_labels_prompts_and_splits(root):
    ds = ChestXray14(root, image_size=16)
    assert ds.name == "chestx-ray14"
    train, test = ds.split("train"), ds.split("test")
    # 00000003_001 (Hernia only) reads as No Finding if kept: it is left out and counted.
    assert [s.id for s in train] == ["nih-00000001_000", "nih-00000002_000"]
    assert [s.id for s in test] == ["nih-00000004_000", "nih-00000005_002"]
    assert ds.split("validate") == [] and ds.skipped["only labels outside the eight classes"] == 1
    # Emphysema (00000001_000) and Mass (00000004_000) are left out of their studies, Mass's box too.
    assert ds.skipped[FINDING_OTHER_CLASS] == 2 and ds.skipped[BOX_OTHER_CLASS] == 1
    assert train[0].report == "Cardiomegaly." and train[0].labels == ("Cardiomegaly",)  # Emphysema dropped
    assert train[1].report == "No acute cardiopulmonary process." and train[1].findings == ()
    # Effusion -> Pleural Effusion, Infiltration -> Lung Opacity, Mass ignored (its box too).
    assert test[0].report == "Lung opacity. Pleural effusion."
    assert [f.label for f in test[0].findings] == ["Lung Opacity", "Pleural Effusion"]
    assert all(s.image.shape == (16, 16) and s.image.dtype == np.float32 for s in train + test)


def test_boxes_from_the_1024_frame(root):
    opacity, effusion = ChestXray14(root, image_size=16).split("test")[0].findings
    # Square 1024 frame -> 16 px: s = 1/64, no crop. Effusion (640, 512, 256, 128) -> (10, 8, 4, 2).
    assert [b.to_list() for b in effusion.boxes] == [[10.0, 8.0, 4.0, 2.0]]
    assert [b.to_list() for b in opacity.boxes] == [[2.0, 4.0, 3.0, 4.0]]
    image = ChestXray14(root, image_size=32).split("test")[0].image  # the 64 px file at 32 px
    assert region_mean(image, (20, 16, 8, 4)) > 0.8 and image[:8, :8].mean() < 0.15


def test_images_of_another_size_than_the_1024_frame_are_refused_unless_declared_a_resized_copy(root):
    with raises(r"Data_Entry_2017_v2020.csv, line 5: the boxes refer to a 1024 x 1024 image, but "
                r".*00000004_000.png is 64 x 64; .*resized_copy=True or set CXRBENCH_RESIZED_COPY=1"):
        ChestXray14(root, image_size=16, resized_copy=False).split("test")
    write_image(root / "images" / "00000004_000.png", 1024, 1024)  # the released size: no declaration needed
    write_image(root / "images" / "00000005_002.png", 1024, 1024)
    assert len(ChestXray14(root, image_size=16, resized_copy=False).split("test")) == 2
    write_image(root / "images" / "00000005_002.png", 64, 48)
    with raises(r"00000005_002.png is 64 x 48 \(another aspect ratio: not a resized copy\)"):
        ChestXray14(root, image_size=16).split("test")


def test_max_samples_and_fingerprint(root):
    ds = ChestXray14(root, image_size=16, max_samples=1)
    assert [s.id for s in ds.split("test")] == ["nih-00000004_000"]
    fp = ds.fingerprint()
    assert fp == ChestXray14(**ds.params()).fingerprint() != ChestXray14(root, image_size=16).fingerprint()
    (root / "test_list.txt").write_text("00000004_000.png\n")
    assert ChestXray14(root, image_size=16, max_samples=1).fingerprint() != fp


# -- malformed files ----------------------------------------------------------------------------------

def write_bbox(root, rows, header=BBOX_HEADER):
    write_csv(root / "BBox_List_2017.csv", header, rows)
    return re.escape(str(root / "BBox_List_2017.csv"))


@pytest.mark.parametrize("row, problem", [
    (["00000005_002.png", "Atelectasis", "0", "900", "0", "100"], r"line 3: the box \[x=0, y=900, w=0, h=100\] has a width"),
    (["00000005_002.png", "Atelectasis", "x", "900", "10", "100"], r"line 3: column 'x' is 'x', not a number"),
    (["00000005_002.png", "Atelectasis", "1000", "900", "300", "100"], r"line 3: the box .* outside the 1024 x 1024"),
    (["00000005_002.png", "Right effusion", "0", "900", "300", "100"], r"line 3: unknown NIH finding label 'Right effusion'"),
    (["00000009_000.png", "Atelectasis", "0", "900", "300", "100"], r"line 3: image '00000009_000.png' is not in"),
    (["00000005_002.png", "Atelectasis", "0", "900"], r"line 3: the row has 4 fields"),
])
def test_bad_box_rows(root, row, problem):
    where = write_bbox(root, [["00000004_000.png", "Effusion", 640, 512, 256, 128], row])
    with raises(where + ", " + problem):
        ChestXray14(root, image_size=16).split("test")


def test_wrong_headers(root):
    where = write_bbox(root, [], header="Image Index,Label,Bbox [x,y,w,h],,,")
    with raises(where + r", line 1: the header lacks column\(s\) 'Finding Label'"):
        ChestXray14(root, image_size=16).split("test")
    where = write_bbox(root, [], header="Image Index,Finding Label,x,y,w,h")
    with raises(where + r", line 1: the header should be 'Image Index,Finding Label,Bbox \[x,y,w,h\],,,'"):
        ChestXray14(root, image_size=16).split("test")
    write_csv(root / "Data_Entry_2017_v2020.csv", "Image Index,Labels", [["a.png", "Mass"]])
    with raises(r"Data_Entry_2017_v2020.csv, line 1: the header lacks column\(s\) 'Finding Labels'"):
        ChestXray14(root, image_size=16).split("test")


def test_unknown_label_missing_image_and_missing_files(root):
    rows = [data_entry_row(i, labels) for i, labels, _, _ in NIH_IMAGES]
    rows[2][1] = "Hernia|Right effusion"
    write_csv(root / "Data_Entry_2017_v2020.csv", DATA_ENTRY_HEADER, rows)
    with raises(r"Data_Entry_2017_v2020.csv, line 4: unknown NIH finding label 'Right effusion'"):
        ChestXray14(root, image_size=16).split("train")
    rows[2][1] = "Hernia"
    write_csv(root / "Data_Entry_2017_v2020.csv", DATA_ENTRY_HEADER, rows)
    (root / "images" / "00000005_002.png").unlink()
    with raises(r"Data_Entry_2017_v2020.csv, line 6: image file '00000005_002.png' not found under"):
        ChestXray14(root, image_size=16).split("test")
    (root / "test_list.txt").write_text("00000004_000.png\n00000001_000.png\n")
    with raises(r"test_list.txt, line 2: image '00000001_000.png' is also in train_val_list.txt \(line 1\)"):
        ChestXray14(root, image_size=16).split("test")
    (root / "test_list.txt").unlink()
    with raises(r"test_list.txt: file not found; it should hold the image names of the test split"):
        ChestXray14(root, image_size=16).split("test")
    (root / "BBox_List_2017.csv").unlink()
    with raises(r"BBox_List_2017.csv: file not found \(nor BBox_List_2017.csv.gz\)"):
        ChestXray14(root, image_size=16).split("test")


def test_unreadable_image_names_the_row(root):
    (root / "images" / "00000004_000.png").write_bytes(b"\x89PNG broken")
    # An image with boxes is opened when its split is built (its size is checked against the box frame).
    with raises(r"00000004_000.png: cannot read image .*referenced by .*Data_Entry_2017_v2020.csv, line 5"):
        ChestXray14(root, image_size=16).split("test")


# -- the real tables --------------------------------------------------------------------------------

def test_real_box_list_header_and_rows_parse(tmp_path):
    """The real BBox_List_2017.csv (from torchxrayvision) with the real Data_Entry rows of its images."""
    assert real_header_line("BBox_List_2017.csv.gz") == BBOX_HEADER
    assert real_header_line("Data_Entry_2017_v2020.csv.gz") == DATA_ENTRY_HEADER
    root = tmp_path / "nih"
    root.mkdir()
    (root / "BBox_List_2017.csv.gz").write_bytes(xrv_table("BBox_List_2017.csv.gz").read_bytes())
    _, boxes = read_real_rows("BBox_List_2017.csv.gz")
    boxed = {r[0] for r in boxes}
    with gzip.open(xrv_table("Data_Entry_2017_v2020.csv.gz"), "rt") as f:
        entries = [line for line in f.read().splitlines()[1:] if line.split(",", 1)[0] in boxed]
    assert len(entries) == len(boxed) == 880
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([DATA_ENTRY_HEADER, *entries]) + "\n")
    listed = sorted(boxed)[:3] + [boxes[0][0]]
    (root / "train_val_list.txt").write_text("")
    (root / "test_list.txt").write_text("".join(f"{i}\n" for i in listed))
    for image in listed:
        write_image(root / "images" / image, 16, 16)
    table = Table(root / "BBox_List_2017.csv.gz", ("Image Index", "Finding Label"))
    assert table.header[:3] == ["Image Index", "Finding Label", "Bbox [x"]
    assert sum(1 for _ in table.rows()) == 984

    # Every real box row is read and checked (labels, numbers, inside the 1024 frame).
    ds = ChestXray14(root, image_size=64, resized_copy=True)  # 16 px copies of the 1024 px images
    assert [s.id for s in ds.split("test")] == sorted(f"nih-{i[:-4]}" for i in listed)
    assert ds.skipped["in neither train_val_list.txt nor test_list.txt"] == 880 - len(listed)
    # The first real row: 00013118_008.png, Atelectasis, (225.08, 547.02, 86.78, 79.19) in 1024 px -> / 16.
    (sample,) = [s for s in ds.split("test") if s.id == "nih-00013118_008"]
    atelectasis = next(f for f in sample.findings if f.label == "Atelectasis")
    x, y, w, h = (float(v) for v in boxes[0][2:6])
    assert boxes[0][:2] == ["00013118_008.png", "Atelectasis"]
    assert atelectasis.boxes[0].to_list() == pytest.approx([x / 16, y / 16, w / 16, h / 16])
    assert sample.image.shape == (64, 64)
