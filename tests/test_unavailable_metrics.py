"""Metrics a run could not compute are said on the console with their reason; broken weights name the file."""

from __future__ import annotations

import pytest

from cxrbench.cli import main
from cxrbench.errors import AssetUnavailable
from cxrbench.metrics.extractors import INCEPTION_WEIGHTS_ENV, InceptionExtractor
from cxrbench.runner import RunOutcome, unavailable_metrics_lines
from cxrbench.testing import DummyModel, registry_with


def test_zero_byte_weights_file_is_named_with_its_problem(tmp_path):
    empty = tmp_path / "pt_inception.pth"
    empty.write_bytes(b"")
    with pytest.raises(AssetUnavailable, match=r"Inception weights file .*pt_inception\.pth is empty \(0 bytes\)"):
        InceptionExtractor.load(empty)


def test_truncated_weights_file_gives_a_reason(tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(b"\x80\x02")  # a pickle cut after its header: torch.load raises EOFError('')
    with pytest.raises(AssetUnavailable) as caught:
        InceptionExtractor.load(truncated)
    reason = str(caught.value).split(f"{truncated}:", 1)[1].strip()
    assert reason, str(caught.value)


def test_lines_group_the_metrics_of_one_run_by_reason():
    note = "not available: no Inception weights"
    metrics = {f"{p}_inception": {"value": None, "note": note} for p in ("fid", "kid")}
    metrics["fid_domain"] = {"value": 12.5, "note": "16 real vs 16 generated"}
    metrics["cond_auroc"] = {"value": None, "note": "macro AUROC"}
    metrics["cond_top1"] = {"value": None}
    outcomes = [RunOutcome("m", "smoke", 0, "ok", None, metrics),
                RunOutcome("n", "smoke", 1, "ok", None, {"fid_domain": {"value": 1.0}}),
                RunOutcome("f", "smoke", 0, "failed", None, {})]
    assert unavailable_metrics_lines(outcomes) == [
        "metrics not computed:",
        "  m seed 0: cond_auroc: no value (note: macro AUROC)",
        "  m seed 0: cond_top1: no value (note: none)",
        f"  m seed 0: fid_inception, kid_inception: {note}",
    ]
    assert unavailable_metrics_lines(outcomes[1:]) == []


@pytest.mark.slow
def test_run_lists_unavailable_metrics_with_their_reason_after_the_summary(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "inception.pth"
    empty.write_bytes(b"")
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(empty))
    monkeypatch.setattr("cxrbench.registry._REGISTRY", registry_with(DummyModel))
    code = main(["run", "dummy", "--track", "smoke", "--out", str(tmp_path / "results"), "--workdir",
                 str(tmp_path / "work"), "--quiet", "--feature-extractor", "domain", "--feature-extractor",
                 "inception"])
    out = capsys.readouterr().out
    assert code == 0, out
    table_end = out.index("| dummy ")
    listed = out.index("metrics not computed:")
    assert listed > table_end
    line = next(line for line in out[listed:].splitlines() if "fid_inception" in line)
    assert line.startswith("  dummy seed 0: ") and "kid_inception" in line
    assert str(empty) in line and "empty (0 bytes)" in line
    assert "fid_domain" not in out[listed:]
