"""The bootstrap's group sums and metrics as they were before integer counts
(clvflow.evaluation.resampling, issue 11 item 3): every sum, counts included, a floating-point sum
per tie group. The reference the integer-count code is pinned against, bit for bit."""

from __future__ import annotations

import numpy as np

from clvflow.evaluation import resampling


class FloatRanking(resampling.Ranking):
    """A ranking whose group sums are floating-point sums per tie group."""

    def sums(self, values: np.ndarray) -> np.ndarray:
        ranked = values[self.order]
        return ranked if self.distinct else np.add.reduceat(ranked, self.starts)


def gini_raw(sums: np.ndarray, sizes: np.ndarray, n: float) -> float:
    mean_rank = np.cumsum(sizes) - (sizes - 1) / 2.0
    return float(np.dot(sums, (n + 1) / 2.0 - mean_rank))


def top_share_capture(sums: np.ndarray, sizes: np.ndarray, n: float, share: float) -> float:
    keep = sizes > 0
    x = np.r_[0.0, np.cumsum(sizes[keep])] / n
    cum = np.cumsum(sums[keep])
    return float(np.interp(share, x, np.r_[0.0, cum / cum[-1]]))


def roc_auc(pos: np.ndarray, sizes: np.ndarray) -> float:
    neg = sizes - pos
    n_pos, n_neg = pos.sum(), neg.sum()
    below = n_neg - np.cumsum(neg)
    return float(np.dot(pos, below + neg / 2.0) / (n_pos * n_neg))
