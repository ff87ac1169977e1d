"""Bootstrap metrics without re-sorting: a resample as counts per customer.

A resample drawn with replacement is the original customers, each counted ``w`` times. The
ranking metrics of :mod:`clvflow.evaluation.metrics` depend on the resample only through sums over the
tie groups of a score (customers with equal score), and those groups are the original ones: so
each score is sorted once, and each resample costs a few passes over the customers (O(n), no sort).
The values equal the metrics computed on the expanded resample (same tie rules) up to
floating-point rounding (about 1e-15 relative).

Counts are small integers (:func:`resample_counts`: one byte per customer nearly always), so
everything the metrics need from counts alone (group sizes, mean ranks, positives and negatives
below a group, the AUC's numerator) is an integer or a half-integer that integer arithmetic gives
exactly, from running sums read at the group ends: the same numbers as summing in floating point
group by group, bit for bit, at a fraction of the passes. Only sums of money (``w * spend``) are
summed group by group in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def resample_counts(draw: np.ndarray, n: int) -> np.ndarray:
    """How many times each of ``n`` customers is in ``draw`` (indices), in one byte per customer
    unless a count exceeds 255 (then as :func:`numpy.bincount` gives it)."""
    counts = np.bincount(draw, minlength=n)
    return counts.astype(np.uint8) if counts.max() < 256 else counts


class Ranking:
    """The tie groups of one score, in descending score order (sorted once)."""

    def __init__(self, score: np.ndarray) -> None:
        self.order = np.argsort(-score, kind="stable")
        ranked = score[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        #: Every score distinct: each group is one customer, its sums the values themselves.
        self.distinct = len(self.starts) == len(score)
        #: Each group's last position (where a running sum holds the sums up to that group).
        self.lasts = np.r_[self.starts[1:], len(score)] - 1
        #: The groups of two or more, and each one's (start, end) in one flat list (the last
        #: end left out when it is the end of the scores): what ``np.add.reduceat`` sums.
        self.shared = np.flatnonzero(self.lasts > self.starts)
        bounds = np.column_stack([self.starts[self.shared], self.lasts[self.shared] + 1]).ravel()
        self._bounds = bounds[:-1] if len(bounds) and bounds[-1] == len(score) else bounds
        # (running counts and twice them fit 32 bits below 2**30 customers: 8x faster than 64)
        self._int = np.int32 if len(score) < 2**30 else np.int64

    def ranked(self, values: np.ndarray) -> np.ndarray:
        """``values`` (given in the original order) in this ranking's order."""
        return values[self.order]

    def spend_groups(self, w: np.ndarray, ranked: np.ndarray) -> SpendGroups:
        """The resample counting customer i ``w[i]`` times, for ``ranked = self.ranked(x)``:
        per tie group, the sum of ``w * x`` and the running sum of the sizes."""
        w_ranked = w[self.order]
        products = w_ranked * ranked
        running = np.cumsum(w_ranked, dtype=self._int)
        if self.distinct:
            return SpendGroups(products, running, w_ranked)
        at_ends = running[self.lasts]
        # Each group's sum as ``np.add.reduceat(products, self.starts)`` gives it, bit for bit:
        # a group of one is its value; a larger one is summed by reduceat over its own span
        # (the same numbers in the same order), without a call per group of one.
        sums = products[self.starts]
        if len(self.shared):
            sums[self.shared] = np.add.reduceat(products, self._bounds)[::2]
        return SpendGroups(sums, at_ends, _steps(at_ends))

    def roc_auc(self, w: np.ndarray, flags: np.ndarray) -> float:
        """ROC AUC of the resample counting customer i ``w[i]`` times (ties count one half, as
        sklearn's trapezoids), for 0/1 ``flags = self.ranked(y)`` as ``uint8``: the positives
        times the negatives scored below them (half those tied), over the pairs; exact integers
        up to the one division."""
        w_ranked = w[self.order]
        pos = w_ranked * flags
        neg = w_ranked - pos
        cum_neg = np.cumsum(neg, dtype=self._int)
        # Twice the pairs a positive does not win: per group, its positives x (the negatives
        # down to the group's end, twice, less the group's own, which tie).
        if self.distinct:  # one customer per group: its negatives are not its positives
            n_pos, n_neg = int(pos.sum(dtype=np.int64)), int(cum_neg[-1])
            ahead = 2 * int(np.dot(pos.astype(np.int64), cum_neg.astype(np.int64)))
        else:
            cum_pos = np.cumsum(pos, dtype=self._int)
            n_pos, n_neg = int(cum_pos[-1]), int(cum_neg[-1])
            neg_ends = cum_neg[self.lasts]
            # (twice a group's negatives to its end less its own: those to its end plus those
            # to the end of the group before)
            both = neg_ends.copy()
            np.add(both[1:], neg_ends[:-1], out=both[1:])
            pos_groups = _steps(cum_pos[self.lasts])
            ahead = _exact_dot(pos_groups, both, len(w))
        return (2 * n_pos * n_neg - ahead) / 2.0 / float(n_pos * n_neg)


def _exact_dot(a: np.ndarray, b: np.ndarray, n: int) -> int:
    """The dot product of two arrays of counts of ``n`` customers, exactly: in floating point
    (BLAS) while every product and partial sum is an integer below 2**53 (each term is under
    2 n**2), else in 64-bit integers."""
    if n < 2**26:
        return int(np.dot(a.astype(np.float64), b.astype(np.float64)))
    return int(np.dot(a.astype(np.int64), b.astype(np.int64)))


def _steps(running: np.ndarray) -> np.ndarray:
    """The terms of a running sum (``np.diff`` with a 0 before, without copying it first)."""
    terms = np.empty_like(running)
    terms[0] = running[0]
    np.subtract(running[1:], running[:-1], out=terms[1:])
    return terms


@dataclass(frozen=True)
class SpendGroups:
    """A resample's tie groups of one score (:meth:`Ranking.spend_groups`), in ranking order."""

    #: Per group, the sum of ``w * x`` (float64).
    sums: np.ndarray
    #: Running sum of the group sizes (integers).
    cum_sizes: np.ndarray
    #: Group sizes: the sum of ``w`` (integers).
    sizes: np.ndarray

    def gini_raw(self, n: int) -> float:
        """:func:`clvflow.evaluation.metrics._gini_raw` of the resample of ``n`` rows: the sums
        times the centred mean rank of each group, ``(n + 1) / 2 - (cum_size - (size - 1) / 2)``,
        which is half the integer ``n - 2 * cum_size + size``."""
        twice_centred = n - 2 * self.cum_sizes + self.sizes  # (within the running sum's type)
        return float(np.dot(self.sums, np.multiply(twice_centred, 0.5)))

    def top_share_capture(self, n: int, share: float) -> float:
        """Share of the actual total held by the top ``share`` of the resample by score
        (:func:`clvflow.evaluation.metrics.top_decile_capture`): the tie-averaged gain curve is
        linear within a tie group, so it is interpolated between the two group ends around
        ``share`` (the same two points, and so the same number, as interpolating on the whole
        curve: an empty group adds no point of its own)."""
        cum = np.cumsum(self.sums)
        x = self.cum_sizes / n
        k = int(np.searchsorted(x, share, side="right"))  # x[k - 1] <= share < x[k]
        if k == len(x):
            return float(cum[-1] / cum[-1])
        low = (x[k - 1], cum[k - 1] / cum[-1]) if k > 0 else (0.0, 0.0)
        return float(np.interp(share, [low[0], x[k]], [low[1], cum[k] / cum[-1]]))
