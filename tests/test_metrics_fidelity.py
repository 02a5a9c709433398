"""Conformance tests of cxrbench.metrics.fidelity: FID, KID, within-prompt MS-SSIM, conditional accuracy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from cxrbench.data.schema import ALL_LABELS, FINDING_CLASSES
from cxrbench.metrics import fidelity as fid


# ----------------------------------------------------------------------------------------------- FID
def _gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


@pytest.mark.parametrize("n,dim", [(200, 8), (60, 32), (10, 16)])  # the last is rank-deficient
def test_frechet_distance_matches_pytorch_fid(n, dim):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(n + dim)
    real = rng.normal(size=(n, dim))
    generated = rng.normal(0.3, 1.2, size=(n + 7, dim)) @ rng.normal(size=(dim, dim)) / math.sqrt(dim)
    args = (*_gaussian_stats(real), *_gaussian_stats(generated))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes scipy's deprecated `disp`
        try:
            expected = fid_score.calculate_frechet_distance(*args)
        except TypeError as exc:  # SciPy >= 1.18 no longer takes `disp` (docs/metrics.md)
            pytest.skip(f"pytorch-fid cannot run on this SciPy: {exc}")
    assert fid.frechet_distance(*args) == float(expected)  # the same computation, bit for bit


def test_frechet_distance_of_diagonal_gaussians_by_formula():
    # Commuting (diagonal) covariances: d^2 = |mu1 - mu2|^2 + sum_i (s1_i - s2_i)^2 with s the std devs.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    std1, std2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((std1 - std2) ** 2))
    value = fid.frechet_distance(mu1, np.diag(std1**2), mu2, np.diag(std2**2))
    assert value == pytest.approx(expected, rel=1e-9)
    assert fid.frechet_distance(2.0, 9.0, -1.0, 4.0) == pytest.approx(3.0**2 + (3.0 - 2.0) ** 2, rel=1e-9)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mu1"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(3))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    assert abs(fid.fid_from_features(real, real)["value"]) < 1e-6
    noise = rng.normal(size=real.shape)
    strengths = (0.1, 0.3, 1.0, 3.0)
    values = [fid.fid_from_features(real, real + strength * noise)["value"] for strength in strengths]
    assert all(later > earlier for earlier, later in zip(values, values[1:]))
    assert values[0] > 1e-4


@pytest.fixture(scope="module")
def synthcxr_test_images() -> np.ndarray:
    from cxrbench.data.synthcxr import SynthCXR

    data = SynthCXR(n_train=0, n_test=160, image_size=64, seed=11)
    return np.stack([sample.image for sample in data.split("test")])


@pytest.mark.slow
def test_domain_fid_of_real_images_is_zero_against_themselves_and_grows_with_noise(synthcxr_test_images):
    from cxrbench.metrics.evaluator import DomainEvaluator

    evaluator = DomainEvaluator.load()
    images = synthcxr_test_images
    real = evaluator.features(images)
    assert real.shape[0] > evaluator.feature_dim  # full-rank covariance
    itself = fid.fid_from_features(real, real)
    assert abs(itself["value"]) < 1e-6 and itself["rank_deficient"] is False
    noise = np.random.default_rng(0).normal(size=images.shape)
    values = [
        fid.fid_from_features(real, evaluator.features(np.clip(images + sigma * noise, 0.0, 1.0)))["value"]
        for sigma in (0.02, 0.1, 0.3)
    ]
    assert values[0] > 1e-3
    assert all(later > earlier for earlier, later in zip(values, values[1:])), values


def test_fid_from_features_report():
    rng = np.random.default_rng(1)
    report = fid.fid_from_features(rng.normal(size=(50, 8)), rng.normal(size=(40, 8)))
    assert set(report) == {"value", "n_real", "n_generated", "feature_dim", "rank_deficient", "note"}
    assert (report["n_real"], report["n_generated"], report["feature_dim"]) == (50, 40, 8)
    assert report["rank_deficient"] is False
    small = fid.fid_from_features(rng.normal(size=(12, 16)), rng.normal(size=(30, 16)))
    assert small["rank_deficient"] is True and "rank-deficient" in small["note"]
    with pytest.raises(ValueError, match="feature dimension"):
        fid.fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid.fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------------------------- KID
def _kid_by_double_loop(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    def kernel(u, v):
        return (gamma * float(np.dot(u, v)) + coef0) ** degree

    m = len(x)
    k_xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    k_yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    k_xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return k_xx + k_yy - 2 * k_xy


def test_kid_matches_the_double_loop_formula():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(7, 3))
    generated = rng.normal(0.5, 1.0, size=(7, 3))
    expected = _kid_by_double_loop(real, generated, degree=3, gamma=1 / 3, coef0=1.0)
    assert fid._unbiased_mmd2(real, generated, degree=3, gamma=1 / 3, coef0=1.0) == pytest.approx(expected, rel=1e-10)
    assert fid._unbiased_mmd2(real, generated, 2, 0.5, 0.0) == pytest.approx(
        _kid_by_double_loop(real, generated, 2, 0.5, 0.0), rel=1e-10)
    # One subset of m = min(subset_size, N // 2, M // 2) rows from the seeded generator, real rows first.
    result = fid.kid_from_features(real, generated, subsets=1, subset_size=50, seed=0)
    rng_subsets = np.random.default_rng(0)
    rows_real = rng_subsets.choice(7, size=3, replace=False)
    rows_generated = rng_subsets.choice(7, size=3, replace=False)
    assert result["value"] == pytest.approx(
        _kid_by_double_loop(real[rows_real], generated[rows_generated], 3, 1 / 3, 1.0), rel=1e-10)
    assert (result["n_subsets"], result["subset_size"]) == (1, 3)


def test_kid_matches_torchmetrics_kernel_inception_distance():
    torch = pytest.importorskip("torch")
    from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

    rng = np.random.default_rng(8)
    real = rng.normal(size=(40, 6))
    generated = rng.normal(0.2, 1.1, size=(40, 6))
    # One subset pair: torchmetrics' kernel (x.y / D + 1)^3 and unbiased MMD^2 on the same rows.
    rows_real, rows_generated = rng.permutation(40)[:25], rng.permutation(40)[:25]
    expected = poly_mmd(torch.from_numpy(real[rows_real]), torch.from_numpy(generated[rows_generated])).item()
    ours = fid._unbiased_mmd2(real[rows_real], generated[rows_generated], degree=3, gamma=1 / 6, coef0=1.0)
    assert ours == pytest.approx(expected, rel=1e-12)

    # The metric class end to end, fed features directly; full-size subsets make its random draws moot, so
    # its mean is the whole-set estimate and its std zero (ours draws subsets of half the sets instead).
    class Features(torch.nn.Module):
        def forward(self, x):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchmetrics warns that it keeps every feature
        metric = KernelInceptionDistance(feature=Features(), subsets=3, subset_size=40)
        metric.update(torch.from_numpy(real), real=True)
        metric.update(torch.from_numpy(generated), real=False)
        mean, std = (float(v) for v in metric.compute())
    assert mean == pytest.approx(fid._unbiased_mmd2(real, generated, 3, 1 / 6, 1.0), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_real, n_generated, cap, expected", [
    (200, 200, 1000, 100), (16, 16, 1000, 8), (5000, 3000, 1000, 1000), (200, 40, 1000, 20), (3, 2, 1000, 2),
])
def test_kid_subset_size_is_half_the_smaller_set(n_real, n_generated, cap, expected):
    assert fid.kid_subset_size(n_real, n_generated, cap) == expected


def _mean_cubic_kernel(a: np.ndarray, b: np.ndarray) -> float:
    """E[(x.y / D + 1)^3] for independent x ~ N(a, I), y ~ N(b, I), from the moments of s = x.y."""
    dim = len(a)
    m1, m2, m3 = a * b, (1 + a**2) * (1 + b**2), (a**3 + 3 * a) * (b**3 + 3 * b)  # moments of x_i y_i
    mean, var = m1.sum(), (m2 - m1**2).sum()
    third_cumulant = (m3 - 3 * m1 * m2 + 2 * m1**3).sum()
    s1, s2, s3 = mean, var + mean**2, third_cumulant + 3 * mean * var + mean**3
    return float(s3 / dim**3 + 3 * s2 / dim**2 + 3 * s1 / dim + 1)


def test_kid_interval_covers_the_population_mmd2_of_two_gaussians():
    dim, n, draws = 4, 40, 200
    zero, shift = np.zeros(dim), np.full(dim, 0.5)
    population = _mean_cubic_kernel(zero, zero) + _mean_cubic_kernel(shift, shift) - 2 * _mean_cubic_kernel(zero, shift)
    rng = np.random.default_rng(1)
    covered, widths = [], []
    for draw in range(draws):
        real, generated = rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift
        kid = fid.kid_from_features(real, generated, subsets=20, seed=draw)
        low, high = kid["value"] - 1.96 * kid["std"], kid["value"] + 1.96 * kid["std"]
        covered.append(low <= population <= high)
        widths.append(high - low)
    # docs/metrics.md: the subset spread of half-size subsets covers the population value about 90% of the
    # time here; the whole-set rule gave zero-width intervals that (almost) never covered it.
    assert 0.8 <= np.mean(covered) <= 0.98
    assert min(widths) > 0
    assert np.median(widths) < 3 * population  # and not covering by being arbitrarily wide


def test_kid_separates_same_and_shifted_distributions():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 10))
    same = fid.kid_from_features(real, rng.normal(size=(300, 10)), subsets=20, subset_size=100, seed=1)
    shifted_features = rng.normal(0.5, 1.0, size=(300, 10))
    shifted = fid.kid_from_features(real, shifted_features, subsets=20, subset_size=100, seed=1)
    assert abs(same["value"]) < 3 * same["std"] + 1e-3
    assert shifted["value"] > 10 * max(abs(same["value"]), same["std"])
    again = fid.kid_from_features(real, real[::-1], subsets=20, subset_size=100, seed=1)
    assert again == fid.kid_from_features(real, real[::-1], subsets=20, subset_size=100, seed=1)


# ------------------------------------------------------------------------------------------ MS-SSIM
@pytest.mark.parametrize(
    "size,scales,kernel", [(16, 2, 7), (32, 3, 7), (64, 3, 11), (128, 4, 11), (176, 5, 11), (512, 5, 11)]
)
def test_ms_ssim_settings_rule(size, scales, kernel):
    settings = fid.ms_ssim_settings(size, size)
    assert (settings["scales"], settings["kernel_size"]) == (scales, kernel)
    assert len(settings["betas"]) == scales
    assert sum(settings["betas"]) == pytest.approx(1.0, abs=2e-4)
    assert size // 2 ** (scales - 1) >= kernel  # the coarsest scale holds a whole window


def test_ms_ssim_settings_rejects_tiny_images():
    with pytest.raises(ValueError, match="16 x 16"):
        fid.ms_ssim_settings(8, 32)


def _smooth_random_images(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    base = rng.random((count, size // 4, size // 4))
    return np.kron(base, np.ones((4, 4)))  # blocky images: structure at several scales


@pytest.mark.parametrize("size", [32, 64])
def test_ms_ssim_identical_samples_score_one_and_noise_lower(size):
    rng = np.random.default_rng(size)
    image = _smooth_random_images(rng, 1, size)[0]
    identical = [np.stack([image] * 3), np.stack([image * 0.5] * 2)]
    result = fid.ms_ssim_within_prompt(identical, n_boot=200)
    assert result["value"] == pytest.approx(1.0, abs=1e-4)
    assert (result["n_prompts"], result["n_pairs"]) == (2, 3 + 1)
    assert result["scales"] == fid.ms_ssim_settings(size, size)["scales"]
    noise = [rng.random((4, size, size)) for _ in range(3)]
    diverse = fid.ms_ssim_within_prompt(noise, n_boot=200)
    assert diverse["value"] < 0.5
    assert diverse["n_pairs"] == 3 * 6
    assert diverse["ci_low"] <= diverse["value"] <= diverse["ci_high"]


def test_ms_ssim_stays_within_each_prompt():
    rng = np.random.default_rng(9)
    first, second = _smooth_random_images(rng, 2, 32)
    # Each prompt repeats its own image: within-prompt similarity is 1 although the prompts differ.
    result = fid.ms_ssim_within_prompt([np.stack([first] * 3), np.stack([second] * 3), first[None]])
    assert result["value"] == pytest.approx(1.0, abs=1e-4)
    assert result["n_prompts"] == 2  # the single-sample set is skipped


def test_ms_ssim_five_scales_match_torchmetrics_defaults():
    torch = pytest.importorskip("torch")
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    rng = np.random.default_rng(4)
    samples = _smooth_random_images(rng, 2, 176) * 0.6 + 0.2 * rng.random((2, 176, 176))
    expected = ms_ssim(
        torch.from_numpy(samples[:1, None]).float(),
        torch.from_numpy(samples[1:, None]).float(),
        data_range=1.0,
    ).item()
    result = fid.ms_ssim_within_prompt([samples], n_boot=10)
    assert result["scales"] == 5 and result["kernel_size"] == 11
    assert result["value"] == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_input_checks():
    assert math.isnan(fid.ms_ssim_within_prompt([np.zeros((1, 32, 32))])["value"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fid.ms_ssim_within_prompt([np.full((2, 32, 32), 2.0)])
    with pytest.raises(ValueError, match="one image size"):
        fid.ms_ssim_within_prompt([np.zeros((2, 32, 32)), np.zeros((2, 64, 64))])


# ----------------------------------------------------------------------------- conditional accuracy
def _probabilities(rows: list[dict[str, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(ALL_LABELS)))
    for i, row in enumerate(rows):
        for label, p in row.items():
            out[i, ALL_LABELS.index(label)] = p
    return out


def test_conditional_accuracy_by_hand():
    rows = [
        {"Atelectasis": 0.9, "Edema": 0.1},                    # prompted Atelectasis: top-1 right
        {"Atelectasis": 0.4, "Edema": 0.6},                    # prompted Atelectasis: top-1 wrong
        {"Cardiomegaly": 0.3, "Atelectasis": 0.2},             # prompted Cardiomegaly: right
        {"Atelectasis": 0.5, "Cardiomegaly": 0.3, "No Finding": 0.9},  # No Finding
        {"Atelectasis": 0.1, "Cardiomegaly": 0.2, "No Finding": 0.8},  # No Finding
        {"Atelectasis": 0.7, "Cardiomegaly": 0.8},             # prompted both: excluded from top-1
    ]
    prompted = [("Atelectasis",), ("Atelectasis",), ("Cardiomegaly",), ("No Finding",), (),
                ("Atelectasis", "Cardiomegaly")]
    result = fid.conditional_accuracy(_probabilities(rows), prompted)
    # Atelectasis: positives {0.9, 0.4, 0.7} vs No Finding {0.5, 0.1}: pairs won 2 + 1 + 2 = 5 of 6.
    assert result["auroc_per_class"]["Atelectasis"] == pytest.approx(5 / 6)
    # Cardiomegaly: positives {0.3, 0.8} vs {0.3, 0.2}: 0.5 (tie) + 1 + 1 + 1 = 3.5 of 4.
    assert result["auroc_per_class"]["Cardiomegaly"] == pytest.approx(3.5 / 4)
    assert all(math.isnan(result["auroc_per_class"][c]) for c in FINDING_CLASSES[2:])
    assert result["auroc_macro"] == pytest.approx((5 / 6 + 3.5 / 4) / 2)
    assert result["top1"] == pytest.approx(2 / 3)
    assert (result["n_single_finding"], result["n_no_finding"]) == (3, 2)


def test_conditional_accuracy_input_checks():
    with pytest.raises(ValueError, match=r"\(N, 9\)"):
        fid.conditional_accuracy(np.zeros((2, 8)), [(), ()])
    with pytest.raises(ValueError, match="one entry per row"):
        fid.conditional_accuracy(np.zeros((2, 9)), [()])
    with pytest.raises(ValueError, match="Nodule"):
        fid.conditional_accuracy(np.zeros((1, 9)), [("Nodule",)])
    empty = fid.conditional_accuracy(np.zeros((1, 9)), [("No Finding",)])
    assert math.isnan(empty["auroc_macro"]) and math.isnan(empty["top1"])


def test_fidelity_metric_metadata():
    assert set(fid.FIDELITY_METRICS) == {
        "fid", "kid", "precision", "recall", "ms_ssim_within_prompt", "cond_auroc", "cond_top1"
    }
    for name, entry in fid.FIDELITY_METRICS.items():
        assert set(entry) == {"higher_is_better", "description", "reference"}, name
    directions = [fid.FIDELITY_METRICS[k]["higher_is_better"] for k in ("fid", "kid", "cond_auroc", "precision")]
    assert directions == [False, False, True, True]
