"""Two-component 1-D Gaussian mixtures for binarizing attention maps: a converged fit and the seed's fit.

Both fits serve one number, the binarization threshold: the mean of the two component means.

- :func:`fit_gaussian_mixture_1d` (cxrbench's fit, for ``iou_gmm``, ``miou_gmm``, ``bbox_iou``,
  ``centre_distance``): expectation-maximization from a deterministic split at the mean, accelerated by
  SQUAREM (Varadhan & Roland, Scand. J. Statistics 2008), then Newton steps until the step that remains
  would move the threshold by less than :data:`GMM_THRESHOLD_TOLERANCE`; variances never drop below a
  floor of one grey level of the normalized map (:data:`GMM_VARIANCE_FLOOR`), so a component cannot
  collapse onto a plateau of tied values (clipping, quantization).
- :func:`fit_seed_mixture` (the ``*_seed`` variants): what the seed code gets from scikit-learn's
  ``GaussianMixture(n_components=2)`` with its defaults, written out here: k-means initialization, EM on
  the raw map with ``reg_covar`` 1e-6 added to the variances, stopping when the mean log-likelihood
  changes by less than 1e-3 or after 100 iterations.

Pure numpy; vectorized over the values of one map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GMM_MAX_ITERATIONS",
    "GMM_THRESHOLD_TOLERANCE",
    "GMM_VARIANCE_FLOOR",
    "GaussianMixture1D",
    "fit_gaussian_mixture_1d",
    "fit_seed_mixture",
    "two_means_split",
]

#: The fit stops once the remaining Newton step would move the threshold by less than this (on the
#: normalized [0, 1] scale); where Newton cannot step, once two SQUAREM cycles in a row moved it less.
GMM_THRESHOLD_TOLERANCE = 1e-7
#: SQUAREM cycles at most after the Newton phase (each costs three EM steps).
GMM_MAX_ITERATIONS = 1000
#: Smallest component variance on the normalized scale: a standard deviation of one grey level (1/256).
GMM_VARIANCE_FLOOR = (1.0 / 256.0) ** 2
#: scikit-learn's defaults, as the seed code uses them.
SEED_TOLERANCE = 1e-3
SEED_MAX_ITERATIONS = 100
SEED_REG_COVAR = 1e-6

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class GaussianMixture1D:
    """A fitted two-component 1-D Gaussian mixture; components sorted by mean (low, high).

    ``n_iterations`` counts EM steps; ``at_floor`` says which variances ended on the floor.
    """

    weights: tuple[float, float]
    means: tuple[float, float]
    variances: tuple[float, float]
    n_iterations: int
    converged: bool
    mean_log_likelihood: float
    at_floor: tuple[bool, bool] = (False, False)

    @property
    def threshold(self) -> float:
        """The binarization threshold: the mean of the two component means."""
        return (self.means[0] + self.means[1]) / 2.0


def _check_values(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"`values` must be a non-empty finite array, but got {x.size} values with nan/inf")
    return x


# ------------------------------------------------------------------------------------ converged fit
class _Values:
    """The values of one map with their squares and moments, computed once per fit."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.x2 = x, x * x
        self.n = x.size
        self.sum, self.sum2 = float(x.sum()), float(self.x2.sum())


def _log_ratio(data: _Values, theta: np.ndarray) -> tuple[np.ndarray, float]:
    """``log(w0 N0(x) / (w1 N1(x)))`` for every value, as the quadratic ``a x^2 + b x + c``, and the
    mean of ``log(w1 N1(x))`` (from the moments of x)."""
    w0, m0, m1, v0, v1 = theta
    a = 0.5 / v1 - 0.5 / v0
    b = m0 / v0 - m1 / v1
    c1 = math.log1p(-w0) - 0.5 * (_LOG_2PI + math.log(v1)) - 0.5 * m1 * m1 / v1
    c0 = math.log(w0) - 0.5 * (_LOG_2PI + math.log(v0)) - 0.5 * m0 * m0 / v0
    mean_l1 = c1 + (m1 * data.sum - 0.5 * data.sum2) / (v1 * data.n)
    ratio = a * data.x2
    ratio += b * data.x
    ratio += c0 - c1
    return ratio, mean_l1


def _em_step(data: _Values, theta: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """One EM step from ``theta = [w0, m0, m1, v0, v1]``; returns the new parameters and the mean
    log-likelihood of ``theta``. Variances are kept at or above ``floor`` (the constrained M-step)."""
    ratio, mean_l1 = _log_ratio(data, theta)
    softplus = np.logaddexp(0.0, ratio)  # log(1 + w0 N0 / (w1 N1))
    r1 = np.exp(-softplus)  # responsibility of component 1
    n = data.n
    n1 = min(max(float(r1.sum()), 1e-12 * n), n * (1.0 - 1e-12))
    n0 = n - n1
    s1, q1 = float(r1 @ data.x), float(r1 @ data.x2)
    m0, m1 = (data.sum - s1) / n0, s1 / n1
    v0 = (data.sum2 - q1) / n0 - m0 * m0
    v1 = q1 / n1 - m1 * m1
    new = np.array([n0 / n, m0, m1, max(v0, floor), max(v1, floor)])
    return new, mean_l1 + float(softplus.mean())


def _valid(theta: np.ndarray, floor: float) -> np.ndarray | None:
    """``theta`` with variances raised to the floor, or None when its weight left (0, 1)."""
    if not (0.0 < theta[0] < 1.0 and np.all(np.isfinite(theta))):
        return None
    fixed = theta.copy()
    fixed[3:] = np.maximum(fixed[3:], floor)
    return fixed


def _squarem_cycle(data: _Values, theta: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """One SQUAREM cycle (scheme SqS3 with a monotone fallback): three EM steps, one extrapolation."""
    theta1, ll0 = _em_step(data, theta, floor)
    theta2, _ = _em_step(data, theta1, floor)
    r = theta1 - theta
    v = theta2 - theta1 - r
    norm_v = float(np.sqrt(v @ v))
    if norm_v == 0.0:
        return theta2, ll0
    alpha = min(-float(np.sqrt(r @ r)) / norm_v, -1.0)
    jump = _valid(theta - 2.0 * alpha * r + alpha * alpha * v, floor)
    if jump is not None:
        new, ll_jump = _em_step(data, jump, floor)
        if ll_jump >= ll0:
            return new, ll_jump
    new, ll2 = _em_step(data, theta2, floor)
    return new, ll2


def _split_at_mean(x: np.ndarray, floor: float) -> np.ndarray | None:
    split = x.mean()
    low, high = x[x <= split], x[x > split]
    if low.size == 0 or high.size == 0:
        return None
    return np.array([low.size / x.size, low.mean(), high.mean(), max(low.var(), floor), max(high.var(), floor)])


def _mixture(theta: np.ndarray, steps: int, converged: bool, log_likelihood: float,
             floor: float) -> GaussianMixture1D:
    low, high = (1, 2) if theta[1] <= theta[2] else (2, 1)
    weights = {1: theta[0], 2: 1.0 - theta[0]}
    variances = {1: theta[3], 2: theta[4]}
    return GaussianMixture1D(
        weights=(float(weights[low]), float(weights[high])),
        means=(float(theta[low]), float(theta[high])),
        variances=(float(variances[low]), float(variances[high])),
        n_iterations=steps,
        converged=converged,
        mean_log_likelihood=log_likelihood,
        at_floor=(bool(variances[low] <= floor), bool(variances[high] <= floor)),
    )


# Newton polishing. Parameters phi = [logit w0, m0, m1, log v0, log v1], unconstrained.
def _to_phi(theta: np.ndarray) -> np.ndarray:
    return np.array([math.log(theta[0]) - math.log1p(-theta[0]), theta[1], theta[2],
                     math.log(theta[3]), math.log(theta[4])])


def _to_theta(phi: np.ndarray) -> np.ndarray:
    return np.array([1.0 / (1.0 + math.exp(-phi[0])), phi[1], phi[2], math.exp(phi[3]), math.exp(phi[4])])


def _log_likelihood(data: _Values, phi: np.ndarray) -> float:
    ratio, mean_l1 = _log_ratio(data, _to_theta(phi))
    return mean_l1 + float(np.logaddexp(0.0, ratio).mean())


def _derivatives(data: _Values, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of the mean log-likelihood in ``phi``.

    With ``g_k`` and ``H_k`` the derivatives of ``log(w_k N_k(x))`` and ``r_k`` the responsibilities,
    a value contributes ``r0 g0 + r1 g1`` to the gradient and ``r0 H0 + r1 H1 + r0 r1 (g0 - g1)(g0 - g1)^T``
    to the Hessian (Louis' identity for a two-component mixture).
    """
    theta = _to_theta(phi)
    ratio, _ = _log_ratio(data, theta)
    x = data.x
    r1 = np.exp(-np.logaddexp(0.0, ratio))
    r0 = 1.0 - r1
    w0 = theta[0]
    inv0, inv1 = 1.0 / theta[3], 1.0 / theta[4]
    d0, d1 = x - phi[1], x - phi[2]
    g0_m, g1_m = d0 * inv0, d1 * inv1
    g0_s, g1_s = 0.5 * d0 * g0_m - 0.5, 0.5 * d1 * g1_m - 0.5
    n = x.size
    gradient = np.array([float(r0.sum()) / n - w0, float(r0 @ g0_m), float(r1 @ g1_m),
                         float(r0 @ g0_s), float(r1 @ g1_s)]) / np.array([1.0, n, n, n, n])
    difference = np.stack([np.ones(n), g0_m, -g1_m, g0_s, -g1_s], axis=1)
    hessian = (difference * (r0 * r1)[:, None]).T @ difference / n
    hessian[0, 0] -= w0 * (1.0 - w0)
    for m, s, r, g_m, inv in ((1, 3, r0, g0_m, inv0), (2, 4, r1, g1_m, inv1)):
        hessian[m, m] -= float(r.sum()) * inv / n
        hessian[m, s] -= float(r @ g_m) / n
        hessian[s, m] = hessian[m, s]
        hessian[s, s] -= float(r @ (g_m * g_m)) / (2.0 * n) / inv
    return gradient, hessian


def _newton_step(data: _Values, phi: np.ndarray) -> tuple[np.ndarray, bool]:
    """A saddle-free Newton ascent direction (eigenvalues of the Hessian taken by magnitude) and whether
    the Hessian is negative definite, i.e. the full step is the Newton step to a nearby maximum."""
    gradient, hessian = _derivatives(data, phi)
    eigenvalues, vectors = np.linalg.eigh(hessian)
    scale = np.maximum(np.abs(eigenvalues), 1e-9 * float(np.abs(eigenvalues).max()) + 1e-300)
    return vectors @ ((vectors.T @ gradient) / scale), bool(eigenvalues.max() < 0.0)


def _polish(data: _Values, theta: np.ndarray, tolerance: float, floor: float,
            max_steps: int) -> tuple[np.ndarray, int, bool]:
    """Newton ascent from ``theta`` until the Newton step would move the threshold by less than
    ``tolerance``; a backtracking line search keeps every step uphill and the variances above the
    floor. Returns the parameters, the steps taken and whether the stopping rule was met."""
    phi = _to_phi(theta)
    for step in range(1, max_steps + 1):
        direction, concave = _newton_step(data, phi)
        if concave and abs(direction[1] + direction[2]) / 2.0 < tolerance:
            return _to_theta(phi + direction), step, True
        direction /= max(1.0, float(np.abs(direction).max()))
        current, length = _log_likelihood(data, phi), 1.0
        while length > 1e-6:
            trial = phi + length * direction
            if min(trial[3], trial[4]) > math.log(floor) and _log_likelihood(data, trial) >= current:
                break
            length /= 2.0
        else:
            return _to_theta(phi), step, False
        phi = trial
    return _to_theta(phi), max_steps, False


def fit_gaussian_mixture_1d(
    values: np.ndarray,
    tolerance: float = GMM_THRESHOLD_TOLERANCE,
    max_iterations: int = GMM_MAX_ITERATIONS,
    variance_floor: float = GMM_VARIANCE_FLOOR,
) -> GaussianMixture1D | None:
    """Fit a two-component Gaussian mixture to 1-D ``values`` (cxrbench's converged fit).

    Initialization is deterministic: the values are split at their mean; each part gives one
    component's weight (its share), mean and variance. (Splitting at fixed quantiles instead would
    put both initial means on the background value whenever the foreground covers less than the
    quantile's share of the map, and EM could not separate them.) Then:

    1. EM in SQUAREM cycles (two EM steps, an extrapolation along them, one more EM step; the
       extrapolation is dropped when it lowers the likelihood) until the threshold, the mean of the
       two means, moves by less than 1e-3 in a cycle (at most 10 cycles). The M-step keeps both
       variances at or above ``variance_floor``, the constrained maximum-likelihood step: a component
       cannot collapse onto a plateau of tied values, where the unconstrained likelihood grows
       without bound.
    2. Newton ascent on the log-likelihood (exact gradient and Hessian; saddle-free where the Hessian
       is not negative definite; backtracking keeps it uphill and above the floor). It stops when the
       Newton step, the estimate of the remaining distance to the maximum, would move the threshold by
       less than ``tolerance``. EM alone crawls along flat ridges of the likelihood, where its steps
       are tiny while the threshold is still far from its limit; a rule on the step or on the change
       of the likelihood then stops early.
    3. Where a variance rests on the floor (Newton cannot step there), SQUAREM cycles go on until the
       threshold moves by less than ``tolerance`` in two cycles in a row, for ``max_iterations``
       cycles at most.

    Returns ``None`` for constant input (there is no second component).
    """
    x = _check_values(values)
    if tolerance <= 0 or max_iterations < 1 or variance_floor <= 0:
        raise ValueError(
            "`tolerance` and `variance_floor` must be > 0 and `max_iterations` >= 1, but got "
            f"{tolerance}, {variance_floor} and {max_iterations}"
        )
    theta = _split_at_mean(x, variance_floor)
    if theta is None:
        return None
    data = _Values(x)
    theta, cycles = _squarem_until(data, theta, 1e-3, variance_floor, calm_needed=1, max_cycles=10)
    steps, converged = 3 * cycles, False
    if min(theta[3], theta[4]) > variance_floor * (1.0 + 1e-6):
        theta, newton_steps, converged = _polish(data, theta, tolerance, variance_floor, max_steps=100)
        steps += newton_steps
    if not converged:
        theta, cycles = _squarem_until(data, theta, tolerance, variance_floor, calm_needed=2,
                                       max_cycles=max_iterations)
        steps += 3 * cycles
        converged = cycles < max_iterations
    return _mixture(theta, steps, converged, _log_likelihood(data, _to_phi(theta)), variance_floor)


def _squarem_until(data: _Values, theta: np.ndarray, tolerance: float, floor: float,
                   calm_needed: int, max_cycles: int) -> tuple[np.ndarray, int]:
    """SQUAREM cycles until the threshold moved by less than ``tolerance`` in ``calm_needed`` cycles in a
    row (or ``max_cycles``); returns the parameters and the cycles run."""
    threshold, calm = (theta[1] + theta[2]) / 2.0, 0
    for cycle in range(1, max_cycles + 1):
        theta, _ = _squarem_cycle(data, theta, floor)
        moved = abs((theta[1] + theta[2]) / 2.0 - threshold)
        threshold = (theta[1] + theta[2]) / 2.0
        calm = calm + 1 if moved < tolerance else 0
        if calm >= calm_needed:
            return theta, cycle
    return theta, max_cycles


def plain_em(values: np.ndarray, tolerance: float, max_iterations: int,
             variance_floor: float = GMM_VARIANCE_FLOOR) -> GaussianMixture1D | None:
    """The same model fitted by plain EM, stopping when the mean log-likelihood changes by less than
    ``tolerance``: the reference the converged fit is tested against (slow; not used for scoring)."""
    x = _check_values(values)
    theta = _split_at_mean(x, variance_floor)
    if theta is None:
        return None
    previous, converged, step, data = -math.inf, False, 0, _Values(x)
    for step in range(1, max_iterations + 1):
        theta, log_likelihood = _em_step(data, theta, variance_floor)
        if abs(log_likelihood - previous) < tolerance:
            converged = True
            break
        previous = log_likelihood
    return _mixture(theta, step, converged, log_likelihood, variance_floor)


# ----------------------------------------------------------------------------------------- seed fit
def two_means_split(values: np.ndarray) -> np.ndarray | None:
    """Labels (True = upper cluster) of the optimal 2-means split of 1-D ``values``, or None if constant.

    In one dimension the two k-means clusters are the values below and above a cut; the cut with the
    smallest within-cluster sum of squares is found exactly by one pass over the sorted values. It is a
    fixed point of Lloyd's algorithm, where scikit-learn's ``KMeans`` (the seed's initialization) ends
    up from its random k-means++ start on maps with one clear split.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    ordered = np.sort(x)
    n = ordered.size
    if n < 2 or ordered[0] == ordered[-1]:
        return None
    sums, squares = np.cumsum(ordered), np.cumsum(ordered * ordered)
    left = np.arange(1, n)
    cost = (squares[:-1] - sums[:-1] ** 2 / left) + (
        (squares[-1] - squares[:-1]) - (sums[-1] - sums[:-1]) ** 2 / (n - left)
    )
    cost[ordered[1:] == ordered[:-1]] = np.inf  # cut only between distinct values
    cut = int(np.argmin(cost))
    low_mean, high_mean = ordered[: cut + 1].mean(), ordered[cut + 1:].mean()
    return x > (low_mean + high_mean) / 2.0


def _seed_parameters(x: np.ndarray, resp: np.ndarray, eps: float) -> np.ndarray:
    """scikit-learn's M-step for two 1-D components: counts + 10 eps, variances + reg_covar.

    Returns ``[w0, w1, m0, m1, v0, v1]`` in the precision of ``x``; the weights are the counts over
    their sum (over the number of values in the initialization, as scikit-learn does).
    """
    counts = resp.sum(axis=0) + 10 * eps
    means = (resp.T @ x) / counts
    variances = [(resp[:, k] * (x - means[k])) @ (x - means[k]) / counts[k] + SEED_REG_COVAR for k in range(2)]
    return np.concatenate([counts, means, np.array(variances, dtype=x.dtype)]).astype(x.dtype)


def _seed_e_step(x: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, float]:
    """Responsibilities (n, 2) and the mean log-likelihood of ``params``, as scikit-learn's E-step."""
    weights, means, variances = params[:2], params[2:4], params[4:]
    precision = 1.0 / np.sqrt(variances)
    log_prob = (-0.5 * (_LOG_2PI + ((x[:, None] - means[None]) * precision[None]) ** 2)
                + np.log(precision)[None] + np.log(weights)[None])
    peak = log_prob.max(axis=1, keepdims=True)
    total = np.log(np.exp(log_prob - peak).sum(axis=1, keepdims=True)) + peak
    return np.exp(log_prob - total), float(total.mean())


def fit_seed_mixture(values: np.ndarray) -> GaussianMixture1D | None:
    """The seed's fit: ``sklearn.mixture.GaussianMixture(n_components=2)`` with its defaults, rewritten.

    k-means labels (:func:`two_means_split`) give one-hot responsibilities; then EM as scikit-learn
    does it: component counts plus ``10 * eps``, variances plus 1e-6, stop when the mean log-likelihood
    changes by less than 1e-3 or after 100 iterations; the means are those of the last M-step. Runs in
    the values' precision (float32 stays float32, as scikit-learn keeps it). None for constant input.
    """
    raw = np.asarray(values).ravel()
    x = raw.astype(np.float32 if raw.dtype == np.float32 else np.float64)
    high = two_means_split(x)
    if high is None:
        return None
    eps = float(np.finfo(x.dtype).eps)
    params = _seed_parameters(x, np.stack([~high, high], axis=1).astype(x.dtype), eps)
    params[:2] /= x.size
    previous, converged, step, log_likelihood = -math.inf, False, 0, -math.inf
    for step in range(1, SEED_MAX_ITERATIONS + 1):
        resp, log_likelihood = _seed_e_step(x, params)
        params = _seed_parameters(x, resp, eps)
        params[:2] /= params[:2].sum()
        if abs(log_likelihood - previous) < SEED_TOLERANCE:
            converged = True
            break
        previous = log_likelihood
    theta = np.array([params[0], params[2], params[3], params[4], params[5]], dtype=np.float64)
    return _mixture(theta, step, converged, log_likelihood, SEED_REG_COVAR)
