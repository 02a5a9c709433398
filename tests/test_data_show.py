"""`cxrbench data show` on every registered dataset: the generated ones and the four real ones (small
copies of their files from adapter_fixtures)."""

from __future__ import annotations

import pytest
from PIL import Image

from adapter_fixtures import make_chexpert, make_mimic, make_nih, make_vindr_physionet
from cxrbench.cli import main
from cxrbench.registry import get_registry

REAL = {"mimic-cxr+ms-cxr": make_mimic, "chestx-ray14": make_nih, "vindr-cxr": make_vindr_physionet,
        "chexpert": make_chexpert}
GENERATED = ("synthcxr", "synthcxr-openi", "synthcxr-base")


def test_every_registered_dataset_is_covered_here():
    assert set(get_registry().datasets) == set(REAL) | set(GENERATED)


@pytest.mark.parametrize("name", sorted(REAL))
def test_data_show_writes_a_sheet_of_a_real_dataset(name, tmp_path, monkeypatch, capsys):
    root = REAL[name](tmp_path / "data")
    monkeypatch.setenv("CXRBENCH_RESIZED_COPY", "1")  # the fixtures' MIMIC and NIH images are resized copies
    out = tmp_path / "sheets"
    assert main(["data", "show", name, "--root", str(root), "--out", str(out), "--image-size", "32",
                 "--per-label", "1"]) == 0
    sheet = out / f"{name}_contact_sheet.png"
    with Image.open(sheet) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    assert f"wrote {sheet}" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATED)
def test_data_show_writes_a_sheet_of_a_generated_dataset(name, tmp_path):
    out = tmp_path / "sheets"
    assert main(["data", "show", name, "--out", str(out), "--image-size", "32", "--per-label", "1"]) == 0
    assert (out / f"{name}_contact_sheet.png").is_file()


def test_data_show_of_a_real_dataset_without_root_names_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CXRBENCH_NIH_ROOT", raising=False)
    assert main(["data", "show", "chestx-ray14", "--out", str(tmp_path)]) == 2
    assert "set CXRBENCH_NIH_ROOT" in capsys.readouterr().err


def test_data_show_prints_what_a_real_dataset_left_out(tmp_path, capsys):
    root = make_chexpert(tmp_path / "data")
    assert main(["data", "show", "chexpert", "--root", str(root), "--out", str(tmp_path / "s"),
                 "--image-size", "32"]) == 0
    assert "dataset chexpert left out: 1 lateral view; " in capsys.readouterr().out
