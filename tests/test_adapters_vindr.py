"""VinDr-CXR adapter: Kaggle and PhysioNet layouts, several radiologists' boxes, errors; real rows."""

from __future__ import annotations

import csv
import gzip
import re

import numpy as np
import pytest

from adapter_fixtures import (
    VINDR_HEADER, VINDR_PHYSIONET_HEADER, make_vindr_kaggle, make_vindr_physionet, region_mean,
    write_csv, write_image, xrv_table,
)
from cxrbench.data.adapters import BOX_OTHER_CLASS, VinDrCXR
from cxrbench.data.adapters.vindr import kaggle_split
from cxrbench.errors import DataError


def raises(match: str):
    return pytest.raises(DataError, match=match)


@pytest.fixture
def kaggle(tmp_path):
    root = tmp_path / "vindr"
    return root, make_vindr_kaggle(root)


def test_kaggle_layout_samples_and_hash_split(kaggle):
    root, splits = kaggle
    ds = VinDrCXR(root, image_size=16)
    assert ds.layout() == "kaggle" and ds.name == "vindr-cxr"
    a, b, c, d = splits
    got = {s.id: s for split in ("train", "test") for s in ds.split(split)}
    # c has only Nodule/Mass: left out and counted.
    assert set(got) == {f"vindr-{a}", f"vindr-{b}", f"vindr-{d}"}
    assert ds.skipped["only findings outside the eight classes"] == 1
    assert ds.skipped[BOX_OTHER_CLASS] == 2  # a's Aortic enlargement box and c's Nodule/Mass box
    assert all(got[f"vindr-{i}"].split == splits[i] for i in (a, b, d))
    assert [s.id for s in ds.split("train")] == sorted(s.id for s in ds.split("train"))
    assert got[f"vindr-{a}"].report == "Cardiomegaly. Pleural effusion."  # Aortic enlargement is ignored
    assert got[f"vindr-{b}"].report == "No acute cardiopulmonary process." and got[f"vindr-{b}"].findings == ()
    assert got[f"vindr-{d}"].report == "Lung opacity."  # Infiltration -> Lung Opacity
    assert kaggle_split(a) in ("train", "test") and ds.split("validate") == []


def test_all_radiologists_boxes_are_kept_and_moved(kaggle):
    root, splits = kaggle
    a = next(iter(splits))
    (sample,) = [s for s in VinDrCXR(root, image_size=16).split(splits[a]) if s.id == f"vindr-{a}"]
    cardiomegaly, effusion = sample.findings
    # 80 x 60 image -> 16 px: s = 16/60, scaled 21.33 x 16, crop ox = (21.33 - 16) / 2 = 8/3.
    # R10's box x 20..60, y 40..56 -> (20 s - 8/3, 40 s, 40 s, 16 s); R8's box is kept next to it.
    s, ox = 16 / 60, 8 / 3
    assert len(cardiomegaly.boxes) == 2
    assert cardiomegaly.boxes[0].to_list() == pytest.approx([20 * s - ox, 40 * s, 40 * s, 16 * s])
    assert cardiomegaly.boxes[1].to_list() == pytest.approx([22 * s - ox, 42 * s, 40 * s, 16 * s])
    # The effusion box x 60..76 -> 13.33..17.6: clipped at the right edge (16).
    assert effusion.boxes[0].to_list() == pytest.approx([60 * s - ox, 30 * s, 16 - (60 * s - ox), 28 * s])
    big = VinDrCXR(root, image_size=60).split(splits[a])
    image = next(x for x in big if x.id == f"vindr-{a}").image
    assert region_mean(image, next(x for x in big if x.id == f"vindr-{a}").findings[0].boxes[0].to_list()) > 0.8


def test_sixteen_bit_png_is_stretched(kaggle):
    root, splits = kaggle
    d = list(splits)[3]
    (sample,) = [s for s in VinDrCXR(root, image_size=16).split(splits[d]) if s.id == f"vindr-{d}"]
    assert sample.image.dtype == np.float32 and sample.image.max() == pytest.approx(1.0, abs=1e-3)
    assert sample.image[0, 0] == pytest.approx(0.0, abs=1e-3)
    assert sample.findings[0].boxes[0].to_list() == [4.0, 4.0, 8.0, 8.0]


def test_physionet_layout_with_image_labels(tmp_path):
    root = make_vindr_physionet(tmp_path / "vindr")
    ds = VinDrCXR(root, image_size=16, max_samples=5)
    assert ds.layout() == "physionet"
    train, test = ds.split("train"), ds.split("test")
    assert [s.id for s in train] == ["vindr-t1", "vindr-t2"] and [s.id for s in test] == ["vindr-s1", "vindr-s2"]
    # t1: one radiologist says No finding, another draws a pneumothorax: the finding wins.
    assert train[0].report == "Pneumothorax." and train[0].findings[0].boxes[0].to_list() == [0.0, 4.0, 12.0, 8.0]
    assert train[1].report == "Pneumonia." and train[1].findings[0].boxes == ()  # from image_labels_train.csv
    assert test[0].report == "Pulmonary edema." and test[1].report == "No acute cardiopulmonary process."
    assert VinDrCXR(**ds.params()).fingerprint() == ds.fingerprint()


def test_meta_table_gives_the_original_frame(kaggle):
    root, splits = kaggle
    a, b, c, d = splits
    write_image(root / "train" / f"{a}.png", 40, 30, [(10, 20, 20, 8)])  # a half-size copy
    write_csv(root / "train_meta.csv", ["image_id", "dim0", "dim1"], [[a, 60, 80]])
    # A file of another size than its frame is refused unless the images are declared a resized copy.
    with raises(rf"train.csv, line 2: the boxes refer to a 80 x 60 image, but .*{a}.png is 40 x 30; .*resized_copy"):
        VinDrCXR(root, image_size=16, resized_copy=False).split(splits[a])
    (sample,) = [s for s in VinDrCXR(root, image_size=16, resized_copy=True).split(splits[a])
                 if s.id == f"vindr-{a}"]
    s, ox = 16 / 60, 8 / 3
    assert sample.findings[0].boxes[0].to_list() == pytest.approx([20 * s - ox, 40 * s, 40 * s, 16 * s])
    assert region_mean(sample.image, sample.findings[0].boxes[0].to_list(), inset=1) > 0.7


# -- malformed files ----------------------------------------------------------------------------------

def rewrite(root, change):
    rows = list(csv.reader((root / "train.csv").read_text().splitlines()))
    change(rows)
    write_csv(root / "train.csv", rows[0], rows[1:])
    return re.escape(str(root / "train.csv"))


@pytest.mark.parametrize("line, column, value, problem", [
    (2, "x_max", "10", r"line 2: the box \[x_min=20, y_min=40, x_max=10, y_max=56\] has a width or height that is not"),
    (2, "y_min", "n/a", r"line 2: column 'y_min' is 'n/a', not a number"),
    (2, "x_max", "", r"line 2: column 'x_max' is empty, but a number is required"),
    (2, "class_name", "Cardiomegalia", r"line 2: unknown VinDr class 'Cardiomegalia'"),
    (2, "class_id", "4", r"line 2: class_id is '4', but 'Cardiomegaly' has class_id 3"),
    (6, "x_min", "3", r"line 6: a 'No finding' row must have empty x_min"),
    (3, "x_max", "200", r"line 3: the box \[x=22, y=42, w=178, h=16\] lies outside the 80 x 60 image"),
])
def test_bad_rows(kaggle, line, column, value, problem):
    root, splits = kaggle

    def change(rows):
        rows[line - 1][VINDR_HEADER.index(column)] = value

    where = rewrite(root, change)
    with raises(where + ", " + problem):
        for split in ("train", "test"):
            VinDrCXR(root, image_size=16).split(split)


def test_wrong_header_missing_image_and_missing_files(kaggle, tmp_path):
    root, splits = kaggle
    a, b, c, d = splits
    (root / "train" / f"{b}.png").unlink()
    (root / "train" / f"{b}.dicom").write_bytes(b"DICM")
    with raises(rf"train.csv, line 6: .*{b}.dicom is a DICOM file; cxrbench reads PNG or JPEG"):
        VinDrCXR(root, image_size=16).split(splits[b])
    (root / "train" / f"{b}.dicom").unlink()
    with raises(rf"train.csv, line 6: image file .*{b}.png not found \(nor .jpg, .jpeg\)"):
        VinDrCXR(root, image_size=16).split(splits[b])
    (root / "train" / f"{a}.png").write_bytes(b"garbage")
    with raises(rf"{a}.png: cannot read image .*referenced by .*train.csv, line 2"):
        VinDrCXR(root, image_size=16).split(splits[a])
    where = rewrite(root, lambda rows: rows[0].__setitem__(4, "xmin"))
    with raises(where + r", line 1: the header lacks column\(s\) 'x_min'"):
        VinDrCXR(root, image_size=16).split("train")
    (root / "train.csv").unlink()
    with raises(r"neither train.csv \(Kaggle layout\) nor annotations/annotations_train.csv"):
        VinDrCXR(root, image_size=16).split("train")
    physio = make_vindr_physionet(tmp_path / "physio")
    (physio / "annotations" / "annotations_test.csv").unlink()
    with raises(r"annotations_test.csv: file not found \(nor annotations_test.csv.gz\)"):
        VinDrCXR(physio, image_size=16).split("train")
    write_csv(physio / "annotations" / "annotations_test.csv", VINDR_PHYSIONET_HEADER, [["t1", "R8", "", "", "", "", "No finding"]])
    with raises(r"annotations_test.csv, line 2: image 't1' is also in annotations_train.csv \(line 2\)"):
        VinDrCXR(physio, image_size=16).split("train")


def test_missing_root_variable(monkeypatch):
    monkeypatch.delenv("CXRBENCH_VINDR_ROOT", raising=False)
    with raises("set CXRBENCH_VINDR_ROOT"):
        VinDrCXR(image_size=16)


# -- the real table ---------------------------------------------------------------------------------

def test_real_kaggle_rows(tmp_path):
    """The first rows of the real VinBigData train.csv (from torchxrayvision), all rows of their images."""
    with gzip.open(xrv_table("vinbigdata-train.csv.gz"), "rt") as f:
        lines = f.read().splitlines()
    header, *rows = csv.reader(lines[:13])
    assert header == VINDR_HEADER
    wanted = list(dict.fromkeys(r[0] for r in rows))
    mine = list(csv.reader(line for line in lines[1:] if line.split(",", 1)[0] in wanted))
    root = tmp_path / "vindr"
    write_csv(root / "train.csv", header, mine)
    meta = []
    for image in wanted:
        coords = [float(v) for r in mine if r[0] == image for v in r[4:8] if v]
        width = height = int(max(coords, default=1000)) + 16
        meta.append([image, height, width])
        write_image(root / "train" / f"{image}.png", 16, 16)
    write_csv(root / "train_meta.csv", ["image_id", "dim0", "dim1"], meta)
    ds = VinDrCXR(root, image_size=32, resized_copy=True)
    samples = {s.id: s for split in ("train", "test") for s in ds.split(split)}
    assert len(samples) + ds.skipped["only findings outside the eight classes"] == len(wanted)
    # The third real row: 9a5094b2..., Cardiomegaly, (691, 1375) - (1653, 1831), on a square frame.
    image, cls, _, _, x0, y0, x1, y1 = rows[2]
    assert (image, cls) == ("9a5094b2563a1ef3ff50dc5c7ff71345", "Cardiomegaly")
    side = next(m[1] for m in meta if m[0] == image)
    cardio = next(f for f in samples[f"vindr-{image}"].findings if f.label == "Cardiomegaly")
    k = 32 / side
    expected = [float(x0) * k, float(y0) * k, (float(x1) - float(x0)) * k, (float(y1) - float(y0)) * k]
    assert any(b.to_list() == pytest.approx(expected) for b in cardio.boxes)
    normal = [s for s in samples.values() if not s.findings]
    assert all(s.report == "No acute cardiopulmonary process." for s in normal)
