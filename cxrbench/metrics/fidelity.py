"""Fidelity metrics: how close generated images are to held-out real ones, how diverse, how on-prompt.

Definitions follow docs/metrics.md (fidelity, generated vs held-out real images). The
functions here take features or images that the caller has already computed (feature extractors live
in ``cxrbench.metrics.evaluator`` and ``cxrbench.metrics.extractors``; precision and recall in
``cxrbench.metrics.manifold``) and are pure numpy/scipy, except the MS-SSIM diversity score, which
imports torch and torchmetrics when it is called.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg

from cxrbench.data.schema import ALL_LABELS, FINDING_CLASSES, NO_FINDING
from cxrbench.metrics.features import paired_features as _paired_features
from cxrbench.metrics.localization import binary_auroc
from cxrbench.metrics.stats import bootstrap_ci

__all__ = [
    "FIDELITY_METRICS",
    "conditional_accuracy",
    "fid_from_features",
    "frechet_distance",
    "kid_from_features",
    "kid_subset_size",
    "ms_ssim_settings",
    "ms_ssim_within_prompt",
]


# ---------------------------------------------------------------------------------------------- FID
def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (docs/metrics.md: FID).

    ``d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` (Heusel et al., NeurIPS
    2017), computed the way ``pytorch_fid.fid_score.calculate_frechet_distance`` does, so values agree
    with it: the matrix square root of the product comes from ``scipy.linalg.sqrtm``; when it is not
    finite (a singular product), ``eps`` is added to both diagonals and it is computed again, with a
    ``RuntimeWarning``; a complex result whose diagonal has imaginary parts within 1e-3 of zero keeps
    its real part, a larger imaginary part raises ``ValueError``.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"`mu1` and `mu2` must have the same shape, but got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape:
        raise ValueError(
            f"`sigma1` and `sigma2` must have the same shape, but got {sigma1.shape} and {sigma2.shape}"
        )
    difference = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"Frechet distance: the covariance product is singular; adding {eps} to both diagonals",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = float(np.max(np.abs(covmean.imag)))
            raise ValueError(
                f"Frechet distance: sqrt(sigma1 sigma2) has an imaginary component of {largest:.3g} "
                "(allowed: 1e-3 on the diagonal); use more samples than feature dimensions or a larger `eps`"
            )
        covmean = covmean.real
    return float(difference.dot(difference) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(real: np.ndarray, generated: np.ndarray) -> dict[str, Any]:
    """FID between two feature sets (docs/metrics.md: FID): :func:`frechet_distance` of their Gaussians.

    Means and covariances (``np.cov(..., rowvar=False)``, ddof=1) are taken in float64. Returns
    ``{"value", "n_real", "n_generated", "feature_dim", "rank_deficient", "note"}``;
    ``rank_deficient`` is true when a set has no more samples than feature dimensions
    (``min(N, M) <= D``), so its covariance is singular and FID is both noisier and biased upward.
    FID depends on the sample sizes: compare values only at equal ``n_real`` and ``n_generated``.
    """
    real_array, generated_array = _paired_features(real, generated)
    n_real, dim = real_array.shape
    n_generated = generated_array.shape[0]
    value = frechet_distance(
        real_array.mean(axis=0),
        np.cov(real_array, rowvar=False),
        generated_array.mean(axis=0),
        np.cov(generated_array, rowvar=False),
    )
    rank_deficient = min(n_real, n_generated) <= dim
    note = "FID depends on sample size; compare at equal n_real and n_generated."
    if rank_deficient:
        note = (
            f"rank-deficient covariance: min(n_real={n_real}, n_generated={n_generated}) "
            f"<= feature_dim={dim}; "
            "the value is biased upward and noisy. " + note
        )
    return {
        "value": value,
        "n_real": int(n_real),
        "n_generated": int(n_generated),
        "feature_dim": int(dim),
        "rank_deficient": bool(rank_deficient),
        "note": note,
    }


# ---------------------------------------------------------------------------------------------- KID
def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (gamma * (x @ y.T) + coef0) ** degree


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    m = x.shape[0]
    k_xx = _polynomial_kernel(x, x, degree, gamma, coef0)
    k_yy = _polynomial_kernel(y, y, degree, gamma, coef0)
    k_xy = _polynomial_kernel(x, y, degree, gamma, coef0)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kid_subset_size(n_real: int, n_generated: int, subset_size: int = 1000) -> int:
    """KID's subset size (metric version 2): ``min(subset_size, N // 2, M // 2)``, at least 2."""
    return max(2, min(int(subset_size), int(n_real) // 2, int(n_generated) // 2))


def kid_from_features(
    real: np.ndarray,
    generated: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Kernel Inception Distance (Binkowski et al., ICLR 2018; docs/metrics.md: KID).

    The unbiased estimate of the squared MMD with the polynomial kernel
    ``k(x, y) = (gamma <x, y> + coef0) ** degree`` (``gamma`` defaults to 1/D):
    ``sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``,
    averaged over ``subsets`` pairs of random subsets (drawn without replacement, independently for
    each subset, from ``numpy.random.default_rng(seed)``) of ``m = min(subset_size, N // 2, M // 2)``
    samples (at least 2): half of the smaller set, so that the subsets differ from one another and
    their spread measures the estimate's sampling variability (Binkowski et al. draw subsets smaller
    than the sets; with ``m = min(N, M)`` every subset of the smaller set is the whole set and ``std``
    collapses). ``std`` is the population standard deviation over subsets. The estimate can be slightly
    negative.
    Returns ``{"value", "std", "n_subsets", "subset_size"}``.
    """
    real_array, generated_array = _paired_features(real, generated)
    if subsets < 1 or subset_size < 2:
        raise ValueError(
            f"`subsets` must be >= 1 and `subset_size` >= 2, but got {subsets} and {subset_size}"
        )
    if degree < 1:
        raise ValueError(f"`degree` must be a positive integer, but got {degree}")
    dim = real_array.shape[1]
    kernel_gamma = 1.0 / dim if gamma is None else float(gamma)
    m = kid_subset_size(real_array.shape[0], generated_array.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets, dtype=np.float64)
    for index in range(subsets):
        x = real_array[rng.choice(real_array.shape[0], size=m, replace=False)]
        y = generated_array[rng.choice(generated_array.shape[0], size=m, replace=False)]
        estimates[index] = _unbiased_mmd2(x, y, degree, kernel_gamma, coef0)
    return {
        "value": float(estimates.mean()),
        "std": float(estimates.std()),
        "n_subsets": int(subsets),
        "subset_size": int(m),
    }


# ----------------------------------------------------------------------------------------- MS-SSIM
#: Scale weights of Wang, Simoncelli & Bovik (2003), finest scale first (torchmetrics' default betas).
MS_SSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Pairs of images per call to torchmetrics (memory bound, not results).
_PAIRS_PER_BATCH = 64


def _scales_allowed(side: int, scales: int, kernel_size: int) -> bool:
    # torchmetrics' own input checks for len(betas) == scales ...
    if side < 2**scales or side // max(1, scales - 1) ** 2 <= kernel_size - 1:
        return False
    # ... and the coarsest scale must still hold one whole kernel window.
    return side // 2 ** (scales - 1) >= kernel_size


def ms_ssim_settings(height: int, width: int) -> dict[str, Any]:
    """Kernel and number of scales of MS-SSIM for images of ``height`` x ``width`` pixels.

    Rule: with ``side = min(height, width)``, the gaussian window is the standard 11 px, sigma 1.5, when
    ``side >= 64``, and 7 px, sigma 1.0, when ``16 <= side < 64`` (smaller images raise ``ValueError``).
    The number of scales is the largest ``S <= 5`` that torchmetrics accepts for that window and for
    which the coarsest scale (``side / 2^(S-1)``) is at least one window wide. The weights are the first
    ``S`` of the standard five (Wang et al. 2003), rescaled to sum to 1 when ``S < 5`` so that equal
    similarity at every scale gives that similarity. Resulting scales: 16 px: 2; 32 px: 3; 64 px: 3;
    128 px: 4; 176 px and larger: 5 (the standard setting).
    """
    side = min(int(height), int(width))
    if side >= 64:
        kernel_size, sigma = 11, 1.5
    elif side >= 16:
        kernel_size, sigma = 7, 1.0
    else:
        raise ValueError(f"MS-SSIM needs images of at least 16 x 16 pixels, but got {height} x {width}")
    scales = max(s for s in range(1, len(MS_SSIM_BETAS) + 1) if _scales_allowed(side, s, kernel_size))
    if scales == len(MS_SSIM_BETAS):
        betas = MS_SSIM_BETAS
    else:
        kept = MS_SSIM_BETAS[:scales]
        total = sum(kept)
        betas = tuple(beta / total for beta in kept)
    return {"scales": scales, "kernel_size": kernel_size, "sigma": sigma, "betas": betas}


def _as_sample_set(samples: Any, index: int) -> np.ndarray:
    array = np.ascontiguousarray(samples, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"`sample_sets[{index}]` must be a (K, H, W) array, but got shape {array.shape}")
    if array.size and (not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"`sample_sets[{index}]` must hold finite values in [0, 1], but got range "
            f"[{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]; clip or rescale the images first"
        )
    return array


def _ms_ssim_of_pairs(samples: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """MS-SSIM (float64) of every unordered pair ``i < j`` of the (K, H, W) ``samples``, in
    ``np.triu_indices`` order, computed by torchmetrics ``_PAIRS_PER_BATCH`` pairs at a time."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    first, second = np.triu_indices(samples.shape[0], k=1)
    images = torch.from_numpy(samples).unsqueeze(1)
    scores = []
    for start in range(0, first.size, _PAIRS_PER_BATCH):
        stop = start + _PAIRS_PER_BATCH
        batch_scores = multiscale_structural_similarity_index_measure(
            images[torch.from_numpy(first[start:stop])],
            images[torch.from_numpy(second[start:stop])],
            gaussian_kernel=True,
            sigma=settings["sigma"],
            kernel_size=settings["kernel_size"],
            reduction="none",
            data_range=1.0,
            betas=settings["betas"],
        )
        scores.append(batch_scores.reshape(-1).double().numpy())
    return np.concatenate(scores)


def ms_ssim_within_prompt(
    sample_sets: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Diversity of the samples of each prompt as mean pairwise MS-SSIM (docs/metrics.md).

    For each prompt's set of ``K >= 2`` samples (a (K, H, W) array in [0, 1]), MS-SSIM (Wang et al.,
    2003; ``torchmetrics.functional.image.multiscale_structural_similarity_index_measure`` with
    ``data_range=1.0``, its default ``normalize="relu"``, and the window and scale weights of
    :func:`ms_ssim_settings`) is computed for all ``K(K-1)/2`` unordered pairs *within* the set and
    averaged; the value is the mean over prompts, with a percentile-bootstrap interval over prompts.
    Sets with ``K < 2`` are skipped. Lower means more diverse samples for one prompt (1.0: identical).
    All sets must share one image size. Returns ``{"value", "ci_low", "ci_high", "n_prompts",
    "n_pairs", "scales", "kernel_size", "sigma"}``; ``value`` is ``nan`` when no set has two samples.
    """
    sets = [_as_sample_set(samples, index) for index, samples in enumerate(sample_sets)]
    usable = [s for s in sets if s.shape[0] >= 2]
    sizes = {s.shape[1:] for s in usable}
    if len(sizes) > 1:
        raise ValueError(f"all `sample_sets` must share one image size, but got sizes {sorted(sizes)}")
    if not usable:
        return {
            "value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_prompts": 0,
            "n_pairs": 0, "scales": None, "kernel_size": None, "sigma": None,
        }
    height, width = usable[0].shape[1:]
    settings = ms_ssim_settings(height, width)

    per_prompt = []
    n_pairs = 0
    for samples in usable:
        pair_scores = _ms_ssim_of_pairs(samples, settings)
        n_pairs += pair_scores.size
        per_prompt.append(float(pair_scores.mean()))
    value, low, high = bootstrap_ci(per_prompt, n_boot=n_boot, alpha=alpha, seed=seed, statistic=np.mean)
    return {
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n_prompts": len(per_prompt),
        "n_pairs": int(n_pairs),
        "scales": settings["scales"],
        "kernel_size": settings["kernel_size"],
        "sigma": settings["sigma"],
    }


# ----------------------------------------------------------------------------- conditional accuracy
def _prompted_findings(prompted_labels: Sequence[Sequence[str]]) -> list[frozenset[str]]:
    """The findings each prompt states (No Finding dropped: an empty set means No Finding), checked."""
    label_sets: list[frozenset[str]] = []
    for index, labels in enumerate(prompted_labels):
        if isinstance(labels, str):
            raise ValueError(
                f"`prompted_labels[{index}]` must be a tuple of labels, but got the string {labels!r}"
            )
        unknown = [label for label in labels if label not in ALL_LABELS]
        if unknown:
            raise ValueError(f"`prompted_labels[{index}]` labels must be in {ALL_LABELS}, but got {unknown}")
        label_sets.append(frozenset(label for label in labels if label != NO_FINDING))
    return label_sets


def _top1_of_single_findings(probs: np.ndarray, single: Sequence[tuple[int, str]]) -> float:
    """Share of the (row, finding) pairs whose argmax over the finding columns is that finding.

    ``nan`` when there is no pair.
    """
    if not single:
        return float("nan")
    rows = np.array([row for row, _ in single])
    targets = np.array([FINDING_CLASSES.index(label) for _, label in single])
    predicted = np.argmax(probs[rows, : len(FINDING_CLASSES)], axis=1)
    return float(np.mean(predicted == targets))


def conditional_accuracy(
    probabilities: np.ndarray, prompted_labels: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Does the evaluator classifier see the prompted finding in the generated image? (docs/metrics.md)

    ``probabilities`` is the evaluator's (N, 9) output over ``ALL_LABELS`` for N generated images;
    ``prompted_labels[i]`` the labels the prompt of image i states (an empty tuple means No Finding).

    - ``auroc_per_class[c]``: exact AUROC (:func:`cxrbench.metrics.localization.binary_auroc`) of
      ``P(c)`` separating images prompted with ``c`` (among others possibly) from images prompted as
      "No Finding"; ``nan`` when either group is empty.
    - ``auroc_macro``: mean of the defined per-class AUROCs (``nan`` if none is defined).
    - ``top1``: among images prompted with exactly one finding, the fraction whose argmax over the
      eight finding classes is that finding (``nan`` if there is no such image).

    Also returns ``n_single_finding`` and ``n_no_finding``, the sizes of those groups.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(ALL_LABELS):
        raise ValueError(
            f"`probabilities` must have shape (N, {len(ALL_LABELS)}) over {ALL_LABELS}, but got {probs.shape}"
        )
    if len(prompted_labels) != probs.shape[0]:
        raise ValueError(
            f"`prompted_labels` must hold one entry per row of `probabilities` ({probs.shape[0]}), "
            f"but got {len(prompted_labels)}"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("`probabilities` must be finite, but it holds nan/inf")
    label_sets = _prompted_findings(prompted_labels)
    no_finding = np.array([len(s) == 0 for s in label_sets])
    per_class: dict[str, float] = {}
    for column, finding in enumerate(FINDING_CLASSES):
        prompted = np.array([finding in s for s in label_sets])
        keep = prompted | no_finding
        per_class[finding] = binary_auroc(probs[keep, column], prompted[keep])
    defined = [value for value in per_class.values() if not math.isnan(value)]
    single = [(row, next(iter(s))) for row, s in enumerate(label_sets) if len(s) == 1]
    return {
        "auroc_macro": float(np.mean(defined)) if defined else float("nan"),
        "auroc_per_class": per_class,
        "top1": _top1_of_single_findings(probs, single),
        "n_single_finding": len(single),
        "n_no_finding": int(no_finding.sum()),
    }


# ------------------------------------------------------------------------------------- directions
#: Direction, definition and reference of each fidelity score.
FIDELITY_METRICS: dict[str, dict[str, Any]] = {
    "fid": {
        "higher_is_better": False,
        "description": "Frechet distance between Gaussians fitted to real and generated features.",
        "reference": "Heusel et al., NeurIPS 2017; pytorch-fid calculate_frechet_distance",
    },
    "kid": {
        "higher_is_better": False,
        "description": "Unbiased MMD^2, cubic polynomial kernel, averaged over random subsets.",
        "reference": "Binkowski et al., ICLR 2018",
    },
    "precision": {
        "higher_is_better": True,
        "description": "Fraction of generated images inside the real k-NN manifold (k=3): realism.",
        "reference": "Kynkaanniemi et al., NeurIPS 2019",
    },
    "recall": {
        "higher_is_better": True,
        "description": "Fraction of real images inside the generated k-NN manifold (k=3): coverage.",
        "reference": "Kynkaanniemi et al., NeurIPS 2019",
    },
    "ms_ssim_within_prompt": {
        "higher_is_better": False,
        "description": "Mean pairwise MS-SSIM within each prompt's samples, then over prompts (diversity).",
        "reference": "Wang, Simoncelli & Bovik, Asilomar 2003; Odena et al., ICML 2017 (as diversity)",
    },
    "cond_auroc": {
        "higher_is_better": True,
        "description": "Macro AUROC of the evaluator's P(finding): images prompted with it vs No Finding.",
        "reference": "Dombrowski et al., AAAI 2024 (classifier on generated images)",
    },
    "cond_top1": {
        "higher_is_better": True,
        "description": "Fraction of single-finding images whose top evaluator finding is the prompted one.",
        "reference": "cxrbench",
    },
}
