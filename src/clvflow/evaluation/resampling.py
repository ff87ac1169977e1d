"""Bootstrap metrics without re-sorting: a resample as counts per customer.

A resample drawn with replacement is the original customers, each counted ``w`` times. The
ranking metrics of :mod:`clvflow.evaluation.metrics` depend on the resample only through sums over the
tie groups of a score (customers with equal score), and those groups are the original ones: so
each score is sorted once, and each resample costs a few weighted group sums (O(n), no sort).
The values equal the metrics computed on the expanded resample (same tie rules) up to
floating-point rounding (about 1e-15 relative).
"""

from __future__ import annotations

import numpy as np


class Ranking:
    """The tie groups of one score, in descending score order (sorted once)."""

    def __init__(self, score: np.ndarray) -> None:
        self.order = np.argsort(-score, kind="stable")
        ranked = score[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        #: Every score distinct: each group is one customer, its sums the values themselves.
        self.distinct = len(self.starts) == len(score)

    def ranked(self, values: np.ndarray) -> np.ndarray:
        """``values`` (given in the original order) in this ranking's order."""
        return values[self.order]

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per tie group, the sum of ``values`` (given in the original order)."""
        return self._group_sums(values[self.order])

    def weighted_sums(self, w: np.ndarray, ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(sums(w * x), sums(w))`` for ``ranked = self.ranked(x)``, to the bit: one gather of
        the resample's counts instead of two (a product is the same number whether the factors
        are taken in the original order or the ranked one), and no group sums at all when every
        score is distinct. At a million customers the gathers and sums are the bootstrap's cost."""
        w_ranked = w[self.order]
        return self._group_sums(w_ranked * ranked), self._group_sums(w_ranked)

    def _group_sums(self, ranked: np.ndarray) -> np.ndarray:
        # (a sum over one element is that element: skipping reduceat changes no bit)
        return ranked if self.distinct else np.add.reduceat(ranked, self.starts)


def gini_raw(sums: np.ndarray, sizes: np.ndarray, n: float) -> float:
    """:func:`clvflow.evaluation.metrics._gini_raw` of the resample of ``n`` rows counting customer i
    ``w[i]`` times, from a ranking's group sums of ``w * actual`` and of ``w``."""
    mean_rank = np.cumsum(sizes) - (sizes - 1) / 2.0  # (an empty group's sum is 0)
    return float(np.dot(sums, (n + 1) / 2.0 - mean_rank))


def top_share_capture(sums: np.ndarray, sizes: np.ndarray, n: float, share: float) -> float:
    """Share of the actual total held by the top ``share`` of the resample by score
    (:func:`clvflow.evaluation.metrics.top_decile_capture`), from the same group sums as
    :func:`gini_raw`: the tie-averaged gain curve is linear within a tie group, so it is
    interpolated between group ends."""
    keep = sizes > 0
    x = np.r_[0.0, np.cumsum(sizes[keep])] / n
    cum = np.cumsum(sums[keep])
    return float(np.interp(share, x, np.r_[0.0, cum / cum[-1]]))


def roc_auc(pos: np.ndarray, sizes: np.ndarray) -> float:
    """ROC AUC of the resample (ties count one half, as sklearn's trapezoids), from a ranking's
    group sums of ``w * active`` and of ``w``."""
    neg = sizes - pos
    n_pos, n_neg = pos.sum(), neg.sum()
    below = n_neg - np.cumsum(neg)  # negatives scored lower than each group
    return float(np.dot(pos, below + neg / 2.0) / (n_pos * n_neg))
