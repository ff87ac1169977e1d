"""Scoring a file too large for one frame, part by part (``clvflow score --parts K``).

The file is split by :func:`clvflow.data.partition.partition_file` into customer-hash parts (the
whole-file facts, such as the default as-of date, from that first pass). Each part is cleaned,
featurised and scored alone; its scores go to a Parquet file and the compact columns the
population-level steps need (``POPULATION_COLUMNS``) are kept. Those steps then run once over the
whole population: segments, tiers and priorities (:func:`clvflow.scoring.segments.add_segments`),
the total-CLV interval and the drift table (from bin counts added up over the parts). Finally
:func:`write_scores` streams the parts back out in the one-frame path's order (by customer_id),
joined with the population columns, block by block into one file.

The result equals :func:`clvflow.scoring.batch.score_transactions` on the whole file: same rows,
order and values, same warnings, drift table and interval.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clvflow.core.dates import DateLike, day_after, to_day
from clvflow.data.files import escape_csv_cells
from clvflow.data.ingest import DataQualityReport
from clvflow.data.partition import Partitioned
from clvflow.features.build import build_features
from clvflow.models.clv import ClvModel
from clvflow.models.uncertainty import total_clv_interval
from clvflow.scoring.batch import ScoreResult, drift_warnings, season_mismatch
from clvflow.scoring.drift import AGE_COLUMNS, DEFAULT_PSI_THRESHOLD, bin_counts, drift_from_counts
from clvflow.scoring.rounding import for_file
from clvflow.scoring.scores import score_features
from clvflow.scoring.segments import REQUIRED_COLUMNS, SEGMENT_COLUMNS, add_segments

log = logging.getLogger(__name__)

#: The columns of the whole population kept in memory: what segments, the total-CLV interval,
#: the segment table and the what-ifs read.
POPULATION_COLUMNS = (*REQUIRED_COLUMNS, "p_active", "horizon_days")
#: Rows per block written, and per row group of a part's scores (read back a group at a time
#: from every part at once while writing).
WRITE_BLOCK_ROWS = 1 << 18
PART_GROUP_ROWS = 1 << 15


def score_parts(
    model: ClvModel,
    split: Partitioned,
    clean: Callable[[Path], tuple[pd.DataFrame, DataQualityReport]],
    folder: Path,
    as_of: DateLike | None = None,
    *,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
    reference_profile: dict | None = None,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    reference_as_of: DateLike | None = None,
    with_reasons: bool = True,
) -> tuple[ScoreResult, list[Path], list[DataQualityReport]]:
    """Score every part of ``split`` (cleaned by ``clean``), each part's scores to ``folder``.

    Returns:
        (the result, whose ``scores`` are the population columns with segments, by customer_id;
        the parts' scores files; the parts' data-quality reports).

    Raises:
        ValueError: ``as_of`` is on or before the first used day (as
            :func:`clvflow.scoring.batch.resolve_as_of`).
    """
    day = to_day(as_of, "as_of") if as_of is not None else day_after(split.last_day)
    if day <= split.first_day:
        raise ValueError(
            f"as-of date {day.date()} is not after the first transaction ({split.first_day}): "
            "no customer is known before it. Use a later --as-of."
        )
    aged = (day - to_day(reference_as_of, "reference_as_of")).days if reference_as_of else 0
    counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pieces, paths, reports, labels = [], [], [], []
    for k, path in enumerate(split.paths):
        start = time.perf_counter()
        tx, report = clean(path)
        reports.append(report)
        features = build_features(tx, day)
        del tx
        scores = score_features(
            model,
            features,
            day,
            margin=margin,
            annual_discount_rate=annual_discount_rate,
            with_reasons=with_reasons,
        )
        if reference_profile:
            table = pd.concat([features, scores[["p_active", "expected_spend"]]], axis=1)
            for col, (unaged, aged_counts) in bin_counts(reference_profile, table, aged).items():
                if col in counts:
                    unaged, aged_counts = counts[col][0] + unaged, counts[col][1] + aged_counts
                counts[col] = (unaged, aged_counts)
        pieces.append(scores[list(POPULATION_COLUMNS)])
        del features
        out = folder / f"scores-{k:04d}.parquet"
        table = pa.Table.from_pandas(scores, preserve_index=False)
        pq.write_table(table, out, row_group_size=PART_GROUP_ROWS)
        paths.append(out)
        labels.append(np.full(len(scores), k, dtype=np.int32))
        log.info(
            "part %d/%d: %s customers scored (%.1f s)",
            k + 1,
            len(split.paths),
            f"{len(scores):,}",
            time.perf_counter() - start,
        )
        del scores, table
    population = pd.concat(pieces, ignore_index=True)
    del pieces
    part_of = np.concatenate(labels)
    order = pc.sort_indices(pa.array(population["customer_id"])).to_numpy()
    population = population.take(order).reset_index(drop=True)
    population = add_segments(population)
    population["part"] = part_of[order]
    result = ScoreResult(scores=population, as_of=day)
    result.clv_total_interval = total_clv_interval(
        getattr(model, "spend_calibration_", None), population
    )
    season_note = season_mismatch(model, day)
    if season_note:
        result.warnings.append(season_note)
    if reference_profile:
        result.drift = drift_from_counts(reference_profile, counts, len(population), psi_threshold)
        if aged:
            log.info(
                "drift: customer ages (%s) compared with the training population aged %+d days",
                ", ".join(AGE_COLUMNS),
                aged,
            )
        result.warnings.extend(drift_warnings(result.drift, psi_threshold))
    for w in result.warnings:
        log.warning(w)
    return result, paths, reports


class _Rows:
    """The rows of a Parquet file, taken in order, any number at a time."""

    def __init__(self, path: Path) -> None:
        self.batches = pq.ParquetFile(path).iter_batches(PART_GROUP_ROWS)
        self.pending: list[pa.RecordBatch] = []
        self.held = 0

    def take(self, n: int) -> pa.Table:
        while self.held < n:
            batch = next(self.batches)
            self.pending.append(batch)
            self.held += batch.num_rows
        table = pa.Table.from_batches(self.pending)
        self.pending = table.slice(n).to_batches()
        self.held -= n
        return table.slice(0, n)


def write_scores(
    population: pd.DataFrame,
    paths: list[Path],
    staged: Path,
    final: Path,
    model_info: dict[str, object],
) -> None:
    """Write the scores file to ``staged`` (as ``final``'s type) block by block: each part's
    scores in the population's order, with the population's segment columns and ``model_info``
    (model_name, model_version, scored_at) appended, as the one-frame path writes it."""
    streams = [_Rows(p) for p in paths]
    part = population["part"].to_numpy()
    csv = not final.name.lower().endswith(".parquet")
    writer: pq.ParquetWriter | None = None
    with open(staged, "w", newline="") if csv else contextlib.nullcontext() as text:
        for start in range(0, len(population), WRITE_BLOCK_ROWS):
            labels = part[start : start + WRITE_BLOCK_ROWS]
            grouped = np.argsort(labels, kind="stable")  # block rows, part by part
            keys, sizes = np.unique(labels, return_counts=True)
            tables = [streams[k].take(int(n)) for k, n in zip(keys, sizes, strict=True)]
            block = pa.concat_tables(tables).to_pandas()
            block = block.take(np.argsort(grouped)).reset_index(drop=True)
            segments = population.iloc[start : start + WRITE_BLOCK_ROWS]
            for col in SEGMENT_COLUMNS:
                block[col] = segments[col].to_numpy()
            for col, value in model_info.items():
                block[col] = value
            block = for_file(block, final)
            if csv:
                escape_csv_cells(block).to_csv(text, index=False, header=start == 0)
                continue
            table = pa.Table.from_pandas(block, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(staged, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
