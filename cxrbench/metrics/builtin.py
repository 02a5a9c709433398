"""The built-in metrics, declared as any metric plugin declares its own (``cxrbench.metric``).

``cxrbench.builtins`` registers :data:`BUILT_IN_METRICS` through ``cxrbench_register_metrics``:

- ``localization`` (maps): every metric of :data:`cxrbench.metrics.localization.LOCALIZATION_METRICS`,
  from one GMM binarization per map;
- ``localization_seed`` (maps): the seed code's pipeline of the GMM-based metrics
  (``cxrbench.metrics.seed_pipeline``), as ``iou_gmm_seed``, ``miou_gmm_seed``, ``bbox_iou_seed`` and
  ``centre_distance_seed`` (pixels of the image, the seed's unit);
- ``fid``, ``kid`` and ``precision_recall`` (features), on every feature extractor of a run.

MS-SSIM within prompt (it needs the generated images) and the conditional accuracy (it needs the track's
domain evaluator) are computed by the core's fidelity step (``cxrbench.scoring``), not through the hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cxrbench.data.schema import Box
from cxrbench.metric import FEATURES, MAPS, Metric
from cxrbench.metrics.fidelity import FIDELITY_METRICS, fid_from_features, kid_from_features
from cxrbench.metrics.localization import LOCALIZATION_METRICS, box_pixels, localization_scores
from cxrbench.metrics.manifold import precision_recall_from_features
from cxrbench.metrics.seed_pipeline import seed_gmm_scores
from cxrbench.metrics.stats import N_BOOTSTRAP, bootstrap_ci

__all__ = ["BUILT_IN_METRICS", "PRECISION_RECALL_K", "SEED_VARIANTS"]

#: Neighbourhood size of the precision/recall manifolds (Kynkaanniemi et al. 2019).
PRECISION_RECALL_K = 3
#: The seed pipeline's outputs: cxrbench's name of each, and the seed code's.
SEED_VARIANTS: dict[str, str] = {"iou_gmm_seed": "iou", "miou_gmm_seed": "miou", "bbox_iou_seed": "bbox_iou",
                                 "centre_distance_seed": "distance"}


def seed_localization_scores(heatmap: np.ndarray, boxes: Sequence[Box], image_shape: tuple[int, int]) -> dict[str, float]:
    """The seed pipeline's GMM-based scores of one map, on the boxes' pixels (``box_pixels``)."""
    truth = box_pixels(list(boxes), int(image_shape[0]), int(image_shape[1]))
    scores = seed_gmm_scores(np.asarray(heatmap), truth, len(boxes))
    return {name: scores[seed_name] for name, seed_name in SEED_VARIANTS.items()}


def _fid(real: np.ndarray, generated: np.ndarray, prompt_ids: np.ndarray, seed: int) -> dict[str, Any]:
    fid = fid_from_features(real, generated)
    note = f"{fid['n_real']} real vs {fid['n_generated']} generated, {fid['feature_dim']}-d features"
    if fid["rank_deficient"]:
        note += "; covariance rank-deficient (a set has no more images than feature dimensions)"
    return {"fid": {"value": fid["value"], "n": fid["n_generated"], "note": note}}


def _kid(real: np.ndarray, generated: np.ndarray, prompt_ids: np.ndarray, seed: int) -> dict[str, Any]:
    kid = kid_from_features(real, generated, seed=seed)
    value, spread = kid["value"], kid.get("std")
    return {"kid": {
        "value": value, "ci_low": None if spread is None else value - 1.96 * spread,
        "ci_high": None if spread is None else value + 1.96 * spread, "n": kid["subset_size"],
        "note": f"{kid['n_subsets']} subsets of {kid['subset_size']}; interval: +-1.96 std over subsets",
    }}


def _precision_recall(real: np.ndarray, generated: np.ndarray, prompt_ids: np.ndarray, seed: int) -> dict[str, Any]:
    """Precision and recall with bootstrap intervals over the covered set; a generated image's neighbours
    are other prompts' images (``cxrbench.metrics.manifold``, "Siblings")."""
    k = PRECISION_RECALL_K
    if min(len(real), len(generated)) <= k:
        note = f"not available: needs more than k={k} real and generated images"
        return {metric: {"value": None, "n": 0, "note": note} for metric in ("precision", "recall")}
    report = precision_recall_from_features(real, generated, k=k, generated_groups=prompt_ids)
    counts = f"{report['n_real']} real vs {report['n_generated']} generated, k={k}, neighbours from other prompts"
    entries = {}
    for metric, inside, over in (("precision", report["generated_inside"], "generated"),
                                 ("recall", report["real_inside"], "real")):
        value, low, high = bootstrap_ci(inside.astype(np.float64), n_boot=N_BOOTSTRAP, seed=seed)
        entries[metric] = {"value": value, "ci_low": low, "ci_high": high, "n": inside.size,
                           "note": f"{counts}; interval: bootstrap over {over} images, manifolds fixed"}
    return entries


def _direction(name: str) -> bool:
    return bool(FIDELITY_METRICS[name]["higher_is_better"])


BUILT_IN_METRICS: tuple[Metric, ...] = (
    Metric("localization", MAPS, localization_scores,
           outputs={name: bool(spec["higher_is_better"]) for name, spec in LOCALIZATION_METRICS.items()},
           description="AUC-ROC, CNR, pointing game, GMM IoU/mIoU, BioViL mIoU, box IoU, centre distance",
           reference="docs/metrics.md",
           output_descriptions={name: spec["description"] for name, spec in LOCALIZATION_METRICS.items()}),
    Metric("localization_seed", MAPS, seed_localization_scores,
           outputs={"iou_gmm_seed": True, "miou_gmm_seed": True, "bbox_iou_seed": True,
                    "centre_distance_seed": False},
           description="The GMM-based metrics by the seed code's pipeline (centre distance in pixels)",
           reference="Dombrowski et al., AAAI 2024 (seed code)",
           output_descriptions={
               "iou_gmm_seed": "iou_gmm by the seed code's pipeline: raw-map GMM fit, orphan filter, upsampled map.",
               "miou_gmm_seed": "miou_gmm by the seed code's pipeline (foreground and background Jaccard).",
               "bbox_iou_seed": "IoU of the box with the rectangle around all seed-binarized foreground pixels.",
               "centre_distance_seed": "Pixels between the box's and that rectangle's centres (seed code).",
           }),
    Metric("fid", FEATURES, _fid, outputs={"fid": _direction("fid")},
           description="Frechet distance of real vs generated features", reference="Heusel et al., NeurIPS 2017"),
    Metric("kid", FEATURES, _kid, outputs={"kid": _direction("kid")},
           description="Unbiased polynomial-kernel MMD^2 over subsets", reference="Binkowski et al., ICLR 2018"),
    Metric("precision_recall", FEATURES, _precision_recall,
           outputs={"precision": _direction("precision"), "recall": _direction("recall")},
           description="k-NN manifold precision and recall", reference="Kynkaanniemi et al., NeurIPS 2019"),
)
