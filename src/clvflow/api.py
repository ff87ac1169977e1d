"""The Python front door: ``import clvflow`` and the functions the CLI composes, one call each.

::

    import clvflow
    tx = clvflow.load_transactions(df, customer="CustomerID", timestamp="InvoiceDate", amount="Revenue")
    model = clvflow.ClvModel(horizon_days=90).fit(tx)
    scores = model.score(tx)

A thin layer over the functions behind ``clvflow train`` / ``score`` / ``backtest`` (ingest,
:mod:`clvflow.models.training`, :mod:`clvflow.scoring.batch`, :mod:`clvflow.mlops.bundle`), with scikit-learn
conventions: settings in ``__init__``, ``fit`` returns ``self``, fitted attributes end in ``_``.
No MLflow run is made here: ``clvflow train`` tracks and registers; :meth:`ClvModel.save` writes
the same bundle folder as ``train --export-dir``.

Two classes share the name ``ClvModel``: ``clvflow.ClvModel`` (this module: fits from a
transactions table the way ``clvflow train`` does) and ``clvflow.models.clv.ClvModel`` (the boosters
fitted on stacked snapshots), which the first holds, fitted, as ``model_``.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvflow.core.dates import DateLike, rows_before, to_day
from clvflow.core.errors import InputError
from clvflow.data import ingest
from clvflow.data.ingest import TX_COLUMNS, ColumnMap, DataQualityReport
from clvflow.data.rowfilter import RowFilter, parse_row_filters

if TYPE_CHECKING:  # (imported on first use: `import clvflow` stays quick)
    from clvflow.mlops.bundle import ModelSource
    from clvflow.mlops.settings import JobSettings
    from clvflow.models import clv
    from clvflow.models.clv import Selection

log = logging.getLogger("clvflow")

#: Keyword of :func:`load_transactions` for each logical column.
KEYWORDS = {
    "customer_id": "customer",
    "timestamp": "timestamp",
    "amount": "amount",
    "quantity": "quantity",
    "unit_price": "unit_price",
}
MAP_HINT = (
    "Map your columns with clvflow.load_transactions(data, customer=..., timestamp=..., "
    "amount=...) (or quantity= and unit_price= instead of amount=)"
)


# ---- transactions ---------------------------------------------------------------------------


def load_transactions(
    data: pd.DataFrame | str | Path,
    *,
    customer: str = "customer_id",
    timestamp: str = "timestamp",
    amount: str | None = "amount",
    quantity: str | None = None,
    unit_price: str | None = None,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter | str] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
    name: str = "DataFrame",
    return_report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, DataQualityReport]:
    """A clean transactions table (``customer_id``, ``timestamp``, ``amount``) from a DataFrame,
    a CSV/Parquet path or ``"cdnow"``, through the CLI's ingest (:func:`clvflow.data.ingest.load_transactions`).

    Keywords name your columns (``customer="CustomerID"``); ``quantity`` and ``unit_price``
    together replace ``amount`` (amount = quantity x unit price). The other keywords are the
    CLI's ``--as-of``, ``--drop-duplicates``, ``--exclude``, ``--date-format``, ``--dayfirst`` and
    ``--keep-far-dates``. ``name`` labels a DataFrame in messages and the report (their "line"
    numbers are then row positions, from 0). The data-quality table is logged (INFO); with
    ``return_report`` the result is ``(table, report)``.

    Raises:
        InputError: a column that is not there (the message lists the columns present and the
            keyword to pass), or any of ingest's checks on the values.
    """
    columns = _column_map(customer, timestamp, amount, quantity, unit_price)
    options: dict[str, Any] = {
        "as_of": as_of,
        "drop_duplicates": drop_duplicates,
        "date_format": date_format,
        "dayfirst": dayfirst,
        "keep_far_dates": keep_far_dates,
    }
    if isinstance(data, pd.DataFrame):
        raw = _raw_frame(data, columns, name)
        try:
            rules = parse_row_filters(exclude)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        tx, report = ingest.clean_transactions(
            raw, source=name, line_offset=0, columns=columns, exclude=rules, **options
        )
    elif isinstance(data, str | Path):
        try:
            tx, report = ingest.load_transactions(data, columns, exclude=exclude, **options)
        except InputError as exc:
            if "missing column(s)" not in str(exc):
                raise
            raise InputError(f"{exc} {MAP_HINT}.") from None
    else:
        raise TypeError(
            f"load_transactions takes a pandas DataFrame, a CSV/Parquet path or 'cdnow', "
            f"not {type(data).__name__}"
        )
    for line in report.to_table().splitlines():
        log.info(line)
    return (tx, report) if return_report else tx


def _column_map(
    customer: str, timestamp: str, amount: str | None, quantity: str | None, unit_price: str | None
) -> ColumnMap:
    if (quantity is None) != (unit_price is None):
        raise InputError("quantity= and unit_price= go together; give both or neither")
    if amount is None and quantity is None:
        raise InputError("no amount column: give amount=, or both quantity= and unit_price=")
    return ColumnMap(customer, timestamp, amount, quantity, unit_price)


def _raw_frame(data: pd.DataFrame, columns: ColumnMap, name: str) -> pd.DataFrame:
    """What :func:`clvflow.data.ingest.read_raw` makes of a file, from a DataFrame: the mapped
    columns under their logical names, every other column ``X`` as ``__X``."""
    present = list(data.columns)
    repeated = sorted({str(c) for c in present if present.count(c) > 1})
    if repeated:
        raise InputError(
            f"{name}: column name(s) {repeated} appear more than once. Rename the columns so "
            "that each has its own name."
        )
    wanted = columns.required()
    missing = [
        f"{col!r} (pass {KEYWORDS[logical]}=...)"
        for logical, col in wanted.items()
        if col not in present
    ]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {', '.join(missing)}. Columns present: {present}. "
            f"{MAP_HINT}."
        )
    frame = data.reset_index(drop=True)
    raw = {logical: frame[col] for logical, col in wanted.items()}
    for extra in present:
        if extra not in wanted.values():
            raw[f"__{extra}"] = frame[extra]
    return pd.DataFrame(raw)


def is_transactions_table(tx: pd.DataFrame) -> bool:
    """Whether ``tx`` is already a clean transactions table (ingest's output: exactly the
    logical columns, typed, every row with a customer id and a time)."""
    return (
        list(tx.columns) == TX_COLUMNS
        and pd.api.types.is_datetime64_dtype(tx["timestamp"])
        and pd.api.types.is_float_dtype(tx["amount"])
        and (
            pd.api.types.is_object_dtype(tx["customer_id"])
            or pd.api.types.is_string_dtype(tx["customer_id"])
        )
        and not tx[["customer_id", "timestamp"]].isna().any().any()
    )


def as_transactions(data: pd.DataFrame | str | Path) -> pd.DataFrame:
    """``data`` as a transactions table: a clean one as it is, anything else through
    :func:`load_transactions` with the default column names (or its clear :class:`InputError`)."""
    if isinstance(data, pd.DataFrame) and is_transactions_table(data):
        return data
    # (without return_report, load_transactions returns the DataFrame alone)
    return load_transactions(data)  # type: ignore[return-value]


# ---- the model ------------------------------------------------------------------------------


class ClvModel:
    """CLV model fitted from a transactions table, as ``clvflow train`` fits it.

    ``fit`` runs the internal backtest on the ``horizon_days`` before the cutoff (which chooses
    the boosters, BG/NBD x Gamma-Gamma or a blend; ``method`` forces one) and refits on all usable
    snapshots before the cutoff; ``score`` writes the table ``clvflow score`` writes.

    Settings (the ``train`` flags of the same names; ``n_jobs`` 0: every usable core).

    Fitted attributes: ``model_`` (the fitted :class:`clvflow.models.clv.ClvModel`), ``selection_``
    (the internal backtest's :class:`clvflow.models.training.Selection`), ``cutoff_``,
    ``reference_profile_`` (the training population, for drift checks), ``source_`` (where a
    loaded model came from; None when fitted here).
    """

    model_: clv.ClvModel
    selection_: Selection | None  # (None: loaded from a bundle that does not keep it)
    cutoff_: pd.Timestamp | None
    reference_profile_: dict[str, dict] | None
    training_data_sha256_: str
    source_: ModelSource | None

    def __init__(
        self,
        horizon_days: int = 90,
        *,
        method: str = "auto",
        n_estimators: int = 400,
        learning_rate: float = 0.03,
        max_depth: int = 3,
        n_jobs: int = 0,
        seasonal_level: bool = True,
        seed: int = 0,
        n_snapshots: int = 6,
        snapshot_spacing_days: int = 30,
    ) -> None:
        self.horizon_days = horizon_days
        self.method = method
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.n_jobs = n_jobs
        self.seasonal_level = seasonal_level
        self.seed = seed
        self.n_snapshots = n_snapshots
        self.snapshot_spacing_days = snapshot_spacing_days

    def __repr__(self) -> str:
        return f"clvflow.ClvModel(horizon_days={self.horizon_days}, method={self.method!r})"

    def _settings(self) -> JobSettings:
        """The pipeline's settings for these parameters (as ``clvflow train`` builds them)."""
        from clvflow.mlops.settings import JobSettings

        return JobSettings.from_options(
            self.horizon_days,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            n_jobs=self.n_jobs,
            seasonal_level=self.seasonal_level,
            seed=self.seed,
            n_snapshots=self.n_snapshots,
            snapshot_spacing_days=self.snapshot_spacing_days,
            method=self.method,
        )

    def fit(self, tx: pd.DataFrame | str | Path, cutoff: DateLike | None = None) -> ClvModel:
        """Fit with the transactions before ``cutoff`` (default: the day after the last one).

        Raises:
            InputError: ``tx`` is not a transactions table and has no default-named columns.
            ValueError: a cutoff or horizon the data cannot support (the message says what fits).
        """
        from clvflow.mlops import checks, publish, tracking
        from clvflow.mlops.settings import resolve_cutoff
        from clvflow.models.training import refit, select_method

        tx = as_transactions(tx)
        settings = self._settings()
        day = resolve_cutoff(tx, cutoff)
        checks.check_train_cutoff(tx, day)
        checks.check_history(tx, day, self.horizon_days, settings.snapshots)
        past = rows_before(tx, day)
        selection = select_method(
            past,
            day,
            self.horizon_days,
            params=settings.params,
            snapshots=settings.snapshots,
            method=self.method,
        )
        model, features = refit(
            past,
            day,
            self.horizon_days,
            selection,
            params=settings.params,
            snapshots=settings.snapshots,
        )
        self.model_ = model
        self.selection_ = selection
        self.cutoff_ = day
        self.reference_profile_ = publish.reference_profile(model, features)
        self.training_data_sha256_ = tracking.transactions_sha256(past)
        self.source_ = None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise AttributeError(
                "this clvflow.ClvModel is not fitted: call .fit(tx) first, or clvflow.load_model"
            )

    def score(
        self,
        tx: pd.DataFrame | str | Path,
        as_of: DateLike | None = None,
        *,
        margin: float = 1.0,
        annual_discount_rate: float = 0.0,
        psi_threshold: float | None = None,
    ) -> pd.DataFrame:
        """The scores table ``clvflow score`` writes, for every customer with a transaction
        before ``as_of`` (default: the day after the last one). Warnings (drift, season) are
        logged. ``scored_at`` is now; ``model_name`` / ``model_version`` are the loaded bundle's
        (empty for a model fitted in this session)."""
        from clvflow.scoring.batch import score_transactions
        from clvflow.scoring.drift import DEFAULT_PSI_THRESHOLD
        from clvflow.scoring.value import check_economics

        self._check_fitted()
        check_economics(margin, annual_discount_rate)
        tx = as_transactions(tx)
        day = to_day(as_of, "as_of") if as_of is not None else None
        source = self.source_
        result = score_transactions(
            self.model_,
            tx,
            day,
            model_name=(source.name or Path(str(source.uri)).name) if source else "",
            model_version=(source.version or source.run_id or "") if source else "",
            scored_at=pd.Timestamp.now().floor("s"),
            margin=margin,
            annual_discount_rate=annual_discount_rate,
            reference_profile=self.reference_profile_,
            psi_threshold=DEFAULT_PSI_THRESHOLD if psi_threshold is None else psi_threshold,
            reference_as_of=self.cutoff_,
        )
        return result.scores

    def score_spark(
        self,
        tx: Any,
        as_of: DateLike | None = None,
        *,
        margin: float = 1.0,
        annual_discount_rate: float = 0.0,
        with_reasons: bool = True,
        spark: Any = None,
    ) -> Any:
        """:meth:`score` on Apache Spark (``clvflow score --engine spark``; needs the
        ``clvflow[spark]`` extra and Java 17): the same scores table, as a Spark DataFrame
        (unsorted; nothing is collected), without the drift check. ``tx``: a Spark DataFrame with
        ``customer_id``, ``timestamp`` (naive, UTC) and ``amount``, or a CSV/Parquet path read by
        :func:`clvflow.spark.ingest.load_transactions_spark`. ``spark``: the session (default:
        the active one, else a new ``local[*]`` one)."""
        from clvflow.scoring.value import check_economics
        from clvflow.spark.ingest import load_transactions_spark
        from clvflow.spark.scoring import score_spark
        from clvflow.spark.session import spark_session

        self._check_fitted()
        check_economics(margin, annual_discount_rate)
        day = to_day(as_of, "as_of") if as_of is not None else None
        if isinstance(tx, (str, Path)):
            tx, _ = load_transactions_spark(spark or spark_session(), tx, as_of=day)
        missing = [c for c in TX_COLUMNS if c not in tx.columns]
        if missing:
            raise InputError(
                f"the Spark DataFrame lacks column(s) {missing}; has {list(tx.columns)}. Rename "
                "them, or pass a file path to read and map with the Spark reader."
            )
        source = self.source_
        return score_spark(
            self.model_,
            tx,
            day,
            model_name=(source.name or Path(str(source.uri)).name) if source else "",
            model_version=(source.version or source.run_id or "") if source else "",
            scored_at=pd.Timestamp.now().floor("s"),
            margin=margin,
            annual_discount_rate=annual_discount_rate,
            with_reasons=with_reasons,
        ).scores

    def save(self, path: str | Path, *, data_name: str = "transactions") -> Path:
        """Write the model as a bundle folder (what ``clvflow train --export-dir`` writes, without
        the MLflow run and registry fields), atomically; ``clvflow score --model PATH`` and
        :func:`load_model` read it. An existing bundle of the same data name and horizon is
        replaced; anything else is refused.

        Returns:
            The bundle folder.
        """
        from clvflow.mlops import bundle, publish

        self._check_fitted()
        if self.source_ is not None:
            raise ValueError(
                f"this model was loaded from {self.source_.uri}: copy that bundle instead"
            )
        assert self.cutoff_ is not None and self.selection_ is not None  # (fitted here)
        settings = dataclasses.replace(self._settings(), data_name=data_name)
        target = bundle.check_export_dir(
            path, {"data_name": data_name, "horizon_days": self.horizon_days}
        )
        manifest = bundle.build_manifest(
            self.model_,
            reference_profile=self.reference_profile_,
            cutoff=self.cutoff_.date().isoformat(),
            training_data_sha256=self.training_data_sha256_,
            data_source=data_name,
            data_name=data_name,
            exported_method=self.model_.blend_.to_dict(),
            model_card=publish.model_card(settings, self.cutoff_, self.selection_),
            scoring_defaults={"margin": 1.0, "annual_discount_rate": 0.0},
        )
        with tempfile.TemporaryDirectory(prefix="clvflow-bundle-") as tmp:
            staged = bundle.write_bundle_files(
                self.model_, Path(tmp) / bundle.PYFUNC_ARTIFACT, manifest
            )
            return bundle.export_bundle(staged, target)


def load_model(uri_or_dir: str | Path) -> ClvModel:
    """A fitted :class:`ClvModel` from a bundle folder, ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` or ``runs:/RUN_ID/clv_model`` (:func:`clvflow.mlops.bundle.load_model`:
    checksums verified)."""
    from clvflow.mlops import bundle

    inner, source = bundle.load_model(uri_or_dir)
    model = ClvModel(horizon_days=inner.horizon_days)
    model.model_ = inner
    model.selection_ = getattr(inner, "selection_", None)
    model.cutoff_ = to_day(source.cutoff, "cutoff") if source.cutoff else None
    model.reference_profile_ = source.manifest.get("reference_profile")
    model.source_ = source
    return model


# ---- backtest -------------------------------------------------------------------------------


def backtest(
    tx: pd.DataFrame | str | Path,
    cutoffs: Sequence[DateLike],
    horizon_days: int = 90,
    **settings: Any,
) -> pd.DataFrame:
    """Out-of-time backtests (:func:`clvflow.models.training.backtest`): at each cutoff, what
    :meth:`ClvModel.fit` would fit there, judged with the baselines on the ``horizon_days``
    after it. ``settings``: :class:`ClvModel`'s. No MLflow run (``clvflow backtest`` logs one,
    with bootstrap intervals).

    Returns:
        The table ``clvflow backtest`` prints for each cutoff, indexed by (cutoff, method).

    Raises:
        ValueError: a cutoff the data cannot support (all are checked before any fit).
    """
    from clvflow.mlops import checks
    from clvflow.models import tables, training

    tx = as_transactions(tx)
    job = ClvModel(horizon_days, **settings)._settings()
    days = sorted({to_day(c, "cutoff") for c in cutoffs})
    if not days:
        raise ValueError("give at least one cutoff, e.g. cutoffs=['1998-01-01']")
    for day in days:
        checks.check_window_covered(tx, day, horizon_days)
        checks.check_history(tx, day, horizon_days, job.snapshots)
    tables_by_day = {
        day.date(): tables.evaluation_table(
            training.backtest(
                tx, day, horizon_days, params=job.params, snapshots=job.snapshots, method=job.method
            ).metrics
        )
        for day in days
    }
    return pd.concat(tables_by_day, names=["cutoff", "method"])
