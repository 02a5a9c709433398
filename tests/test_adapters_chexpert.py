"""CheXpert adapter: labels only (no boxes), frontal views, prompts from labels, errors; real rows."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from adapter_fixtures import CHEXPERT_HEADER, chexpert_row, make_chexpert, write_csv, write_image, xrv_table
from cxrbench.data.adapters import CheXpert
from cxrbench.data.adapters._images import crop_transform
from cxrbench.errors import DataError


def raises(match: str):
    return pytest.raises(DataError, match=match)


@pytest.fixture
def root(tmp_path):
    return make_chexpert(tmp_path / "chexpert")


def test_samples_labels_and_prompts(root):
    ds = CheXpert(root, image_size=16)
    assert ds.name == "chexpert"
    train, test = ds.split("train"), ds.split("test")
    assert [s.id for s in train] == ["chexpert-patient00001-study1-view1_frontal",
                                     "chexpert-patient00002-study1-view1_frontal"]
    assert train[0].report == "No acute cardiopulmonary process." and train[0].findings == ()
    assert train[1].report == "Cardiomegaly. Pleural effusion."  # Edema -1.0 (uncertain) is not positive
    assert [f.label for f in train[1].findings] == ["Cardiomegaly", "Pleural Effusion"]
    assert all(f.boxes == () for s in train + test for f in s.findings)
    assert [s.id for s in test] == ["chexpert-patient64541-study1-view1_frontal"] and test[0].split == "test"
    assert test[0].report == "Lung opacity."
    assert ds.split("validate") == []
    assert ds.skipped == {"lateral view": 1,
                          "no positive label among the eight classes and No Finding not 1.0": 1}
    image = train[0].image
    assert image.shape == (16, 16) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1


def test_images_relative_to_root_or_its_parent(root):
    """``root`` may be CheXpert-v1.0-small itself (Path minus its first part) or hold it (Path as is)."""
    parent = root.parent
    write_csv(parent / "train.csv", CHEXPERT_HEADER,
              [chexpert_row("CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg", Edema="1.0")])
    write_csv(parent / "valid.csv", CHEXPERT_HEADER, [])
    (sample,) = CheXpert(parent, image_size=16).split("train")
    assert sample.ref.path == root / "train" / "patient00002" / "study1" / "view1_frontal.jpg"
    assert sample.report == "Pulmonary edema."


def test_resize_and_centre_crop_of_a_tall_image(root):
    path = root / "train" / "patient00002" / "study1" / "view1_frontal.jpg"
    write_image(path, 32, 48, [(0, 16, 32, 16)])  # a bright band across the middle third
    sample = CheXpert(root, image_size=16).split("train")[1]
    assert crop_transform(32, 48, 16) == (0.5, 0.0, 4.0)  # 16 x 24, crop 4 rows off the top and bottom
    # The band (rows 16..32) -> rows 8 - 4 .. 16 - 4 = 4..12 of the square image.
    assert sample.image[5:11].mean() > 0.8 and sample.image[:3].mean() < 0.15 and sample.image[13:].mean() < 0.15


def test_max_samples_params_and_fingerprint(root):
    ds = CheXpert(root, image_size=16, max_samples=1)
    assert len(ds.split("train")) == 1
    assert CheXpert(**ds.params()).fingerprint() == ds.fingerprint() != CheXpert(root, image_size=16).fingerprint()


# -- malformed files ----------------------------------------------------------------------------------

def test_bad_label_view_and_header(root):
    rows = [chexpert_row("CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg", Cardiomegaly="yes")]
    write_csv(root / "train.csv", CHEXPERT_HEADER, rows)
    where = re.escape(str(root / "train.csv"))
    with raises(where + r", line 2: column 'Cardiomegaly' is 'yes'; a label must be 1.0, 0.0, -1.0 or empty"):
        CheXpert(root, image_size=16).split("train")
    rows = [chexpert_row("CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg", "Oblique")]
    write_csv(root / "train.csv", CHEXPERT_HEADER, rows)
    with raises(where + r", line 2: column 'Frontal/Lateral' is 'Oblique', but it must be one of"):
        CheXpert(root, image_size=16).split("train")
    write_csv(root / "train.csv", [c for c in CHEXPERT_HEADER if c not in ("Edema", "Fracture")], [])
    with raises(where + r", line 1: the header lacks column\(s\) 'Edema', 'Fracture'"):
        CheXpert(root, image_size=16).split("train")
    write_csv(root / "train.csv", CHEXPERT_HEADER, [["CheXpert-v1.0-small/train/p/s/v.jpg", "Male"]])
    with raises(where + r", line 2: the row has 2 fields, the header names 19"):
        CheXpert(root, image_size=16).split("train")


def test_missing_image_unreadable_image_and_missing_file(root):
    (root / "valid" / "patient64541" / "study1" / "view1_frontal.jpg").unlink()
    with raises(r"valid.csv, line 2: image file .*CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg "
                r"not found"):
        CheXpert(root, image_size=16).split("test")
    (root / "train" / "patient00001" / "study1" / "view1_frontal.jpg").write_bytes(b"\xff\xd8 truncated")
    sample = CheXpert(root, image_size=16).split("train")[0]
    with raises(r"view1_frontal.jpg: cannot read image .*referenced by .*train.csv, line 3"):
        sample.image
    (root / "valid.csv").unlink()
    with raises(r"valid.csv: file not found \(nor valid.csv.gz\)"):
        CheXpert(root, image_size=16).split("test")


def test_gzip_that_is_not_gzip(root):
    (root / "train.csv").rename(root / "train.csv.gz")
    with raises(r"train.csv.gz: not a readable gzip file"):
        CheXpert(root, image_size=16).split("train")


def test_missing_root(monkeypatch, tmp_path):
    monkeypatch.delenv("CXRBENCH_CHEXPERT_ROOT", raising=False)
    with raises(r"set CXRBENCH_CHEXPERT_ROOT \(or pass root=...\) to the directory that holds train.csv"):
        CheXpert()
    with raises(r"root=.*absent is not a directory"):
        CheXpert(tmp_path / "absent")


# -- the real table ---------------------------------------------------------------------------------

def test_real_chexpert_rows(tmp_path):
    """The header and first rows of the real CheXpert train.csv (from torchxrayvision)."""
    with gzip.open(xrv_table("chexpert_train.csv.gz"), "rt") as f:
        lines = [next(f) for _ in range(13)]
    assert lines[0].rstrip("\n").split(",") == CHEXPERT_HEADER
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("".join(lines))
    write_csv(root / "valid.csv", CHEXPERT_HEADER, [])
    for line in lines[1:]:
        write_image(tmp_path / line.split(",", 1)[0], 24, 30)
    ds = CheXpert(root, image_size=16)
    samples = {s.id: s for s in ds.split("train")}
    assert len(samples) + sum(ds.skipped.values()) == 12
    # Row 2: patient00001 study1 frontal, No Finding 1.0 -> a normal study.
    assert samples["chexpert-patient00001-study1-view1_frontal"].findings == ()
    # Row 3: patient00002 study2 frontal, Lung Opacity 1.0 (Cardiomegaly, Edema ... -1.0 are uncertain).
    assert samples["chexpert-patient00002-study2-view1_frontal"].labels == ("Lung Opacity",)
