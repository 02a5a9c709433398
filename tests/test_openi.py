"""SynthCXR-OpenI: parsing the Open-i archive, MeSH mapping, stating sentences, the rendered dataset."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from cxrbench.data import Dataset, openi
from cxrbench.data.openi import OpenISynthCXR, map_mesh_tag, split_sentences, states, tag_role
from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, QUERY_WORDS, box_mask
from cxrbench.errors import AssetUnavailable, DataError

needs_archive = pytest.mark.skipif(
    importlib.util.find_spec("torchxrayvision") is None,
    reason="the Open-i reports come with torchxrayvision: pip install torchxrayvision (or 'cxrbench[xrv]')",
)


@pytest.fixture(scope="module")
def small() -> OpenISynthCXR:
    return OpenISynthCXR(n_train=24, n_test=8, image_size=64, seed=0)


# --- no archive needed ------------------------------------------------------------------------------


def test_missing_package_raises_asset_unavailable_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    hidden = lambda name, *args: None if name == "torchxrayvision" else real(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    with pytest.raises(AssetUnavailable, match=r"pip install torchxrayvision.*cxrbench\[xrv\]"):
        openi.archive_path()
    with pytest.raises(AssetUnavailable, match="torchxrayvision"):
        OpenISynthCXR(n_train=2, n_test=2)


@pytest.mark.parametrize("tag, expected", [
    ("Pleural Effusion/right/small", ("Pleural Effusion", "right", None, "small")),
    ("Pleural Effusion/bilateral/large", ("Pleural Effusion", "bilateral", None, "large")),
    ("Opacity/lung/base/left/streaky", ("Lung Opacity", "left", "lower", None)),
    ("Airspace Disease/lung/upper lobe/right/patchy", ("Lung Opacity", "right", "upper", None)),
    ("Infiltrate/lung/lingula", ("Lung Opacity", "left", "middle", None)),
    ("Density/lung/middle lobe/right/round", ("Lung Opacity", "right", "middle", None)),
    ("Pulmonary Atelectasis/base/bilateral/mild", ("Atelectasis", "bilateral", "lower", "mild")),
    ("Cardiomegaly/borderline", ("Cardiomegaly", None, None, "mild")),
    ("Cardiac Shadow/enlarged/severe", ("Cardiomegaly", None, None, "severe")),
    ("Pulmonary Edema/interstitial/mild", ("Edema", None, None, "mild")),
    ("Pneumothorax/apex/right/moderate", ("Pneumothorax", "right", None, "moderate")),
    ("Pneumonia/lower lobe/left", ("Pneumonia", "left", "lower", None)),
    ("Consolidation/lung/upper lobe/right/focal", ("Consolidation", "right", "upper", None)),
    ("normal", (NO_FINDING, None, None, None)),
])
def test_mesh_tags_map_to_class_side_zone_and_severity(tag, expected):
    f = map_mesh_tag(tag)
    assert (f.label, f.side, f.zone, f.severity) == expected and f.tag == tag


def test_tags_outside_the_classes_have_roles():
    assert map_mesh_tag("Calcified Granuloma/lung/upper lobe/right") is None
    assert map_mesh_tag("Density/ribs/left/anterior") is None  # a density outside the lung
    assert tag_role("Spine/degenerative") == tag_role("Calcified Granuloma") == "incidental"
    assert tag_role("Costophrenic Angle/right/blunted") == "supporting"
    assert tag_role("Nodule/lung/lower lobe/right") == "other"
    assert tag_role("Cicatrix/lung/base/left") == "other"
    assert tag_role("Cardiac Shadow/borderline") == "other"


def test_cleaning_and_sentences():
    text = "1. XXXX XXXX right pleural effusion. 2. Heart size normal.No change 3. No pneumothorax"
    expected = ["Right pleural effusion.", "Heart size normal.", "No change.", "No pneumothorax."]
    assert split_sentences(text) == expected
    assert "XXXX" not in openi.clean_text("Stable XXXX opacity ( XXXX ) in the XXXX lobe.")


@pytest.mark.parametrize("sentence, label, stated", [
    ("Small right pleural effusion.", "Pleural Effusion", True),
    ("No pleural effusion.", "Pleural Effusion", False),
    ("No pneumothorax or pleural effusion.", "Pleural Effusion", False),
    ("Small left effusion, no pneumothorax.", "Pleural Effusion", True),
    ("Small left effusion, no pneumothorax.", "Pneumothorax", False),
    ("Mild pleural thickening.", "Pleural Effusion", False),  # pleural, but no effusion
    ("Pneumothorax is not seen.", "Pneumothorax", False),
    ("Previously seen pneumonia has resolved.", "Pneumonia", False),
    ("Streaky right lower lobe infiltrate versus atelectasis.", "Atelectasis", True),
    ("Stable cardiomegaly.", "Cardiomegaly", True),
    ("Normal cardiac silhouette.", "Cardiomegaly", False),
    ("The cardiac silhouette is enlarged.", "Cardiomegaly", True),
    ("Negative for focal consolidation.", "Consolidation", False),
])
def test_states_skips_negated_sentences(sentence, label, stated):
    assert states(sentence, label) is stated


def test_find_phrase_takes_the_stating_sentence_and_prefers_the_tagged_side():
    sentences = ["No pleural effusion on the left.", "Heart size normal.", "Small right pleural effusion."]
    assert openi.find_phrase("Pleural Effusion", sentences) == "Small right pleural effusion."
    sentences = ["Left basilar opacity.", "Right upper lobe opacity."]
    assert openi.find_phrase("Lung Opacity", sentences, side="right") == "Right upper lobe opacity."
    assert openi.find_phrase("Pneumothorax", sentences) is None


def test_usable_study_from_a_handwritten_report():
    report = openi.OpenIReport(
        uid="CXR0", findings="Small right pleural effusion. XXXX mild cardiomegaly. No pneumothorax.",
        impression="1. Small right pleural effusion. 2. XXXX lungs otherwise clear.",
        major=("Pleural Effusion/right/small", "Cardiomegaly/mild", "Spine/degenerative"))
    study, reason = openi.usable_study(report)
    assert reason == "usable"
    assert study.report == "Small right pleural effusion. Lungs otherwise clear. Mild cardiomegaly."
    heart, effusion = study.findings  # in FINDING_CLASSES order
    assert (effusion.label, effusion.phrase) == ("Pleural Effusion", "Small right pleural effusion.")
    assert [(s.side, s.severity) for s in effusion.sites] == [("right", "small")]
    assert heart.phrase == "Mild cardiomegaly." and heart.sites[0].severity == "mild"
    blocked = openi.OpenIReport("CXR1", "", "Left basilar scarring.", ("Cicatrix/lung/base/left",))
    assert openi.usable_study(blocked) == (None, "tag outside the mapping")
    untagged = openi.OpenIReport("CXR2", "", "Cardiomegaly. Right lower lobe pneumonia.", ("Cardiomegaly",))
    assert openi.usable_study(untagged) == (None, "prompt states an untagged finding")


# --- the real archive ---------------------------------------------------------------------------------


@needs_archive
def test_parses_the_real_archive_once():
    reports = openi.load_reports()
    assert 3900 <= len(reports) <= 4000 and len({r.uid for r in reports}) == len(reports)
    assert openi.load_reports() is reports  # parsed once per process
    assert all(re.fullmatch(r"CXR\d+", r.uid) for r in reports)
    assert sum(bool(r.impression.strip()) for r in reports) > 3800
    assert sum("normal" in r.major for r in reports) > 1000
    assert any("Pleural Effusion/right/small" in r.major for r in reports)
    summary = openi.selection_summary()
    assert summary["usable"] == sum(summary["pool_sizes"].values()) > 1000
    assert all(summary["usable_per_label"][c] >= 5 for c in FINDING_CLASSES)


@needs_archive
def test_every_usable_study_is_consistent():
    for study in openi.usable_studies():
        assert "XXXX" not in study.report and study.report.strip() == study.report
        for f in study.findings:
            assert f.phrase in study.report and states(f.phrase, f.label)
            assert any(q in f.phrase.lower() for q in QUERY_WORDS[f.label])


@needs_archive
def test_dataset_is_deterministic_and_splits_do_not_share_reports(small):
    assert isinstance(small, Dataset) and small.name == "synthcxr-openi"
    assert small.params() == {"n_train": 24, "n_test": 8, "image_size": 64, "seed": 0}
    fingerprint = small.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert OpenISynthCXR(**small.params()).fingerprint() == fingerprint
    train_ids = {small.study("train", i).uid for i in range(24)}
    test_ids = {small.study("test", i).uid for i in range(8)}
    assert not train_ids & test_ids
    pools = openi._pools(str(openi.archive_path()))
    pool_ids = {split: {s.uid for p in pools[split].values() for s in p} for split in ("train", "test")}
    assert not pool_ids["train"] & pool_ids["test"]
    with pytest.raises(DataError, match=r"'train', 'test'.*'val'"):
        small.split("val")


@needs_archive
def test_samples_carry_the_real_text_and_boxes_inside_the_image(small):
    size = small.image_size
    labels = set()
    for split in ("train", "test"):
        for i, sample in enumerate(small.split(split)):
            study = small.study(split, i)
            assert sample.report == study.report and study.uid in sample.id
            assert sample.image.shape == (size, size) and sample.image.dtype == np.float32
            assert [f.label for f in sample.findings] == [f.label for f in study.findings]
            for f in sample.findings:
                labels.add(f.label)
                assert f.phrase in sample.report
                assert f.boxes
                for b in f.boxes:
                    assert 0 <= b.x and 0 <= b.y and b.x + b.w <= size and b.y + b.h <= size
            sides = {s.side for f in study.findings for s in f.sites if s.label == "Pleural Effusion"}
            effusion = next((f for f in sample.findings if f.label == "Pleural Effusion"), None)
            if effusion is not None and sides <= {"right", "left"}:
                # One box per side, on the image side of the patient's side (PA view).
                assert len(effusion.boxes) == len(sides)
                assert {("right" if b.center[0] < size / 2 else "left") for b in effusion.boxes} == sides
    assert len(labels) >= 6  # rare classes come first in the seeded order


@needs_archive
def test_a_class_drawn_on_both_sides_is_rendered_once_with_a_box_per_side(monkeypatch):
    dataset = OpenISynthCXR(n_train=24, n_test=0, image_size=32, seed=0)
    specs = [dataset.spec("train", i) for i in range(24)]
    two_sided = [s for s in specs if len({f.label for f in s.findings}) < len(s.findings)]
    assert two_sided, "the sample must hold a class drawn on both sides"
    rendered: list[int] = []
    real = openi.render_studies
    monkeypatch.setattr(openi, "render_studies",
                        lambda jobs, *args: rendered.append(len(jobs)) or real(jobs, *args))
    samples = {s.id: s for s in dataset.split("train")}
    assert sum(rendered) == len(specs)  # no study rendered a second time for its boxes
    for spec in two_sided:
        for finding in samples[spec.id].findings:
            sides = {f.side for f in spec.findings if f.label == finding.label}
            assert len(finding.boxes) >= len(sides)


@needs_archive
def test_an_effusion_is_drawn_in_its_box(small):
    train = small.split("train")
    size = small.image_size
    with_effusion = [i for i, s in enumerate(train) if "Pleural Effusion" in s.labels]
    without = [s for s in train if "Pleural Effusion" not in s.labels]
    assert with_effusion and without
    gaps = []
    for i in with_effusion:
        sample = train[i]
        (boxes,) = [f.boxes for f in sample.findings if f.label == "Pleural Effusion"]
        mask = box_mask(boxes, size, size)
        # The same patient and report without the effusion: the change lies in the box, and fluid is
        # brighter than the aerated lung it replaces.
        rest = [label for label in sample.labels if label != "Pleural Effusion"]
        bare = small.render("train", i, labels=rest)
        change = np.abs(sample.image.astype(np.float64) - bare)
        assert change[mask].sum() >= 0.95 * change.sum(), sample.id
        assert sample.image[mask].mean() > bare[mask].mean() + 0.05, sample.id
        # The studies of reports without an effusion, in the same region.
        gaps.append(sample.image[mask].mean() - np.mean([s.image[mask].mean() for s in without]))
    assert np.mean(gaps) > 0.05
    assert np.array_equal(small.render("train", with_effusion[0]), train[with_effusion[0]].image)


@needs_archive
def test_registered_as_a_builtin_dataset():
    from cxrbench import builtins

    registered = {}
    builtins.cxrbench_register_datasets(lambda name, factory: registered.setdefault(name, factory))
    ds = registered["synthcxr-openi"](n_train=1, n_test=1, image_size=32, seed=2)
    assert isinstance(ds, OpenISynthCXR) and ds.params()["seed"] == 2
