"""Ranking entries of one track on both axes: Pareto rank first, then a joint score.

Axes: fidelity ``fid_domain`` (lower is better) and localization ``loc_word_auc_roc`` (higher is better),
each the seed mean of an entry.

- **Pareto rank** (non-dominated sorting): entry A dominates B when A is at least as good as B on both axes
  and strictly better on one. Rank 1 is the set no entry dominates (the frontier); rank k is the frontier
  of what remains after removing ranks 1 .. k-1.
- **Joint score** (tie-break within a Pareto rank): each axis min-max normalized over the track's ranked
  entries to [0, 1] with 1 = best (lowest FID, highest AUC-ROC), then the mean of the two. It depends on
  the set of entries: adding an entry can change other entries' scores, never their Pareto ranks. An axis
  on which all entries are equal carries no information and contributes 0.5 to every entry.

Intervals play no part: two entries whose intervals overlap may still get different ranks.
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(fid_a: float, auc_a: float, fid_b: float, auc_b: float) -> bool:
    """Whether (fid_a, auc_a) dominates (fid_b, auc_b): no worse on both axes, strictly better on one."""
    return fid_a <= fid_b and auc_a >= auc_b and (fid_a < fid_b or auc_a > auc_b)


def pareto_ranks(fidelity: Sequence[float], localization: Sequence[float]) -> list[int]:
    """Non-dominated sorting rank of each (fidelity, localization) pair; 1 = the Pareto frontier.

    ``fidelity`` is lower-is-better (FID), ``localization`` higher-is-better (AUC-ROC).
    """
    if len(fidelity) != len(localization):
        raise ValueError(
            "fidelity and localization must have the same length, but got "
            f"{len(fidelity)} and {len(localization)}"
        )
    ranks = [0] * len(fidelity)
    remaining = set(range(len(fidelity)))
    rank = 0
    while remaining:
        rank += 1
        front = {i for i in remaining if not any(_beats(j, i, fidelity, localization) for j in remaining)}
        for i in front:
            ranks[i] = rank
        remaining -= front
    return ranks


def _beats(j: int, i: int, fidelity: Sequence[float], localization: Sequence[float]) -> bool:
    """Whether entry ``j`` dominates entry ``i``."""
    return dominates(fidelity[j], localization[j], fidelity[i], localization[i])


def normalized_axis(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """Min-max normalize to [0, 1] with 1 = best; 0.5 for every value when all are equal."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [0.5] * len(values)
    if higher_is_better:
        return [(v - low) / (high - low) for v in values]
    return [(high - v) / (high - low) for v in values]


def joint_scores(fidelity: Sequence[float], localization: Sequence[float]) -> list[float]:
    """Mean of the min-max normalized axes (FID lower-is-better, AUC-ROC higher-is-better), in [0, 1]."""
    fid_norm = normalized_axis(fidelity, higher_is_better=False)
    loc_norm = normalized_axis(localization, higher_is_better=True)
    return [(f + l) / 2.0 for f, l in zip(fid_norm, loc_norm)]
