"""The GMM fits behind the binarization metrics: convergence of cxrbench's fit, the collapse guard, and the
seed code's fit written out (checked against scikit-learn where it is installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrbench.metrics import gmm
from cxrbench.metrics.localization import normalize_heatmap


def _blob(size: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma**2))


def hard_maps() -> dict[str, np.ndarray]:
    """Normalized 32 x 32 maps of the kinds that trouble a GMM fit: ties, plateaus, clipping, overlap."""
    rng = np.random.default_rng(21)
    smooth = _blob(32, 20, 11, 5) + 0.6 * _blob(32, 8, 24, 4) + rng.normal(0, 0.08, (32, 32))
    maps = {
        "ties (quantized to 0.05)": np.round(smooth * 20) / 20,
        "plateau at 0 (clipped below)": np.clip(smooth - 0.35, 0, None),
        "plateaus at both ends (clipped)": np.clip(smooth, 0.1, 0.7),
        "float16 storage": smooth.astype(np.float16).astype(np.float64),
        "overlapping components (flat likelihood)": _blob(32, 16, 16, 9) + rng.normal(0, 0.15, (32, 32)),
        "box with noise": (np.pad(np.ones((8, 10)), ((5, 19), (12, 10))) + rng.normal(0, 0.2, (32, 32))),
        "two levels (a perfect box map)": np.pad(np.ones((8, 10)), ((5, 19), (12, 10))),
    }
    return {name: normalize_heatmap(m).ravel() for name, m in maps.items()}


@pytest.mark.parametrize("name", sorted(hard_maps()))
def test_converged_threshold_agrees_with_em_run_to_1e_10(name):
    values = hard_maps()[name]
    fit = gmm.fit_gaussian_mixture_1d(values)
    reference = gmm.plain_em(values, tolerance=1e-10, max_iterations=200_000)
    assert fit is not None and fit.converged
    assert reference is not None and reference.converged
    assert abs(fit.threshold - reference.threshold) < 1e-3
    # It is also a stationary point: one more EM step barely moves it.
    theta = np.array([fit.weights[0], fit.means[0], fit.means[1], fit.variances[0], fit.variances[1]])
    stepped, _ = gmm._em_step(gmm._Values(values), theta, gmm.GMM_VARIANCE_FLOOR)
    assert abs((stepped[1] + stepped[2]) / 2 - fit.threshold) < 1e-6


def test_a_loose_likelihood_rule_stops_far_from_the_threshold_it_approaches():
    # The map where plain EM crawls: the old stopping rule (likelihood change < 1e-5) ends > 0.01 away.
    values = hard_maps()["overlapping components (flat likelihood)"]
    loose = gmm.plain_em(values, tolerance=1e-5, max_iterations=300)
    fit = gmm.fit_gaussian_mixture_1d(values)
    assert abs(loose.threshold - fit.threshold) > 0.01
    assert fit.n_iterations < 300


def test_no_component_collapses_onto_a_plateau():
    # 60% of the values tie at 0: the unconstrained likelihood grows without bound as a component
    # shrinks onto them; with a floor of 1e-6 EM ends on it. The floor of one grey level holds.
    values = hard_maps()["plateau at 0 (clipped below)"]
    assert (values == 0).mean() > 0.5
    tiny_floor = gmm.plain_em(values, tolerance=1e-10, max_iterations=200_000, variance_floor=1e-6)
    assert min(tiny_floor.variances) == pytest.approx(1e-6)
    fit = gmm.fit_gaussian_mixture_1d(values)
    assert min(fit.variances) >= gmm.GMM_VARIANCE_FLOOR
    assert fit.at_floor == (True, False)  # the plateau component rests on the floor, no lower
    assert 0.0 < fit.threshold < 1.0 and math.isfinite(fit.mean_log_likelihood)


def test_newton_derivatives_match_finite_differences():
    values = hard_maps()["box with noise"]
    data = gmm._Values(values)
    phi = gmm._to_phi(np.array([0.7, 0.2, 0.8, 0.02, 0.03]))
    gradient, hessian = gmm._derivatives(data, phi)
    step = 1e-6
    for i in range(5):
        shift = np.zeros(5)
        shift[i] = step
        up, down = gmm._log_likelihood(data, phi + shift), gmm._log_likelihood(data, phi - shift)
        assert gradient[i] == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-8)
        numeric = (gmm._derivatives(data, phi + shift)[0] - gmm._derivatives(data, phi - shift)[0]) / (2 * step)
        np.testing.assert_allclose(hessian[:, i], numeric, rtol=1e-4, atol=1e-6)


def test_constant_values_have_no_mixture():
    assert gmm.fit_gaussian_mixture_1d(np.full(10, 0.3)) is None
    assert gmm.fit_seed_mixture(np.full(10, 0.3, dtype=np.float32)) is None
    with pytest.raises(ValueError, match="finite"):
        gmm.fit_gaussian_mixture_1d(np.array([0.0, np.nan]))


# ------------------------------------------------------------------------------------------ seed fit
def test_two_means_split_is_the_optimal_cut_by_brute_force():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 30), rng.normal(4, 1, 10), [2.0, 2.0, 2.0]])
    ordered = np.sort(values)

    def cost(cut):
        low, high = ordered[:cut], ordered[cut:]
        return ((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum()

    best = min(range(1, values.size), key=cost)
    labels = gmm.two_means_split(values)
    assert labels.sum() == values.size - best
    assert values[labels].min() > values[~labels].max()


def test_seed_fit_agrees_with_scikit_learn_default_gaussian_mixture():
    mixture = pytest.importorskip("sklearn.mixture")
    rng = np.random.default_rng(8)
    for index in range(4):
        heatmap = (_blob(64, 20 + 8 * index, 30, 6) + rng.normal(0, 0.05, (64, 64))) * 1e-3
        values = heatmap.astype(np.float32).ravel()
        np.random.seed(index)  # the global state scikit-learn's k-means initialization draws from
        reference = mixture.GaussianMixture(n_components=2).fit(values.reshape(-1, 1))
        ours = gmm.fit_seed_mixture(values)
        np.testing.assert_allclose(ours.means, np.sort(reference.means_.ravel()), rtol=1e-5)
        assert ours.n_iterations == reference.n_iter_
