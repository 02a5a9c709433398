"""Global image statistics must not give a SynthCXR finding away (cxrbench/data/audit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbench.data.audit import GLOBAL_STATISTICS, global_statistic_auroc, global_statistics
from cxrbench.data.schema import Box, Finding, Sample
from cxrbench.data.synthcxr import SynthCXR


def test_global_statistics_of_known_images():
    flat = global_statistics(np.full((8, 8), 0.25))
    assert flat["mean"] == pytest.approx(0.25) and flat["std"] == pytest.approx(0.0)
    assert flat["histogram_entropy"] == pytest.approx(0.0) and flat["gradient_energy"] == pytest.approx(0.0)
    half = np.zeros((8, 8))
    half[:, 4:] = 1.0
    stats = global_statistics(half)
    assert stats["bright_fraction"] == pytest.approx(0.5)
    assert stats["histogram_entropy"] == pytest.approx(np.log(2.0))
    assert set(stats) == set(GLOBAL_STATISTICS)


def _sample(i: int, label: str | None, brightness: float, rng: np.random.Generator) -> Sample:
    image = np.clip(brightness + 0.05 * rng.standard_normal((16, 16)), 0, 1)
    findings = (Finding(label, "x", (Box(1, 1, 2, 2),)),) if label else ()
    return Sample(f"s{i}", image, "report", "train", findings)


def test_a_finding_that_brightens_the_film_is_caught_and_one_that_does_not_is_not():
    rng = np.random.default_rng(0)
    samples = [_sample(i, None, 0.5, rng) for i in range(30)]
    samples += [_sample(100 + i, "Edema", 0.7, rng) for i in range(30)]  # a global give-away
    samples += [_sample(200 + i, "Pneumothorax", 0.5, rng) for i in range(30)]  # same distribution
    table = global_statistic_auroc(samples)
    assert table["Edema"]["best"] == pytest.approx(1.0)
    assert table["Pneumothorax"]["best"] < 0.75
    assert "Cardiomegaly" not in table  # no positive studies


def test_synthcxr_findings_are_not_given_away_by_one_global_statistic():
    table = global_statistic_auroc(SynthCXR(n_train=480, n_test=0, image_size=64, seed=5).split("train"))
    assert len(table) == 8
    for cls, row in table.items():
        assert row["best"] < 0.8, (cls, row["best_statistic"], row["best"])
