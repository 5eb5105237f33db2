"""Has the data moved away from what the model was trained on? Feature drift measured by
Evidently column by column, and the model's error now against its error on the reference.

The share of drifted columns is MEASURED here: the number of columns Evidently's per-column
tests flagged, divided by the number of columns tested. Evidently's dataset-level
`drift_share` (DataDriftPreset / DriftedColumnsCount, default 0.5) is a configured THRESHOLD,
not a measurement; a check that reports it as the share "detects drift" on every run. This
module never reads it: verdicts come from the `ValueDrift` tests alone.

Evidently is imported inside the functions that run it, so importing this module (and the
code location) stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, wasserstein_distance

# Identify Evidently 0.7's per-column results in `Snapshot.dict()`.
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_VALUE_DRIFT_TEST_ID = "drift"
_TEST_DRIFTED, _TEST_NOT_DRIFTED = "FAIL", "SUCCESS"


@dataclass(frozen=True)
class DriftThresholds:
    """When drift fails the check, and how each column is tested.

    `method` and `column_threshold` go to Evidently's per-column test unchanged; None keeps
    Evidently's choice (by size: K-S p-value, threshold 0.05, for a reference of at most 1,000
    rows, normed Wasserstein distance, threshold 0.1, above that; chi-square, Z or
    Jensen-Shannon for columns with at most 5 distinct values). That fixed 0.1 distance is
    exceeded by sampling noise alone when the current sample is small (for i.i.d. normal data,
    ~35% of columns at 200 rows, nearly all at 24); "ks" does not have that bias.
    `per_column` thresholds (a `DriftReference`'s) replace `column_threshold` where given."""

    max_drifted_share: float = 0.5  # fail when the measured share of drifted columns exceeds it
    max_error_ratio: float = 1.5  # fail when current error / reference error exceeds it
    min_rows: int = 24  # fewer rows (or values in a column) than this: not decided
    method: str | None = None  # an Evidently stattest name: "ks", "wasserstein", "psi", ...
    column_threshold: float | None = None  # p-value or distance threshold of that test
    per_column: dict[str, float] = field(default_factory=dict)

    def threshold_of(self, column: str) -> float | None:
        return self.per_column.get(column, self.column_threshold)

    def exceeded(self, share_drifted: float, error_ratio: float | None) -> bool:
        """Whether one day's measurements pass the limits (NaN passes nothing)."""
        return share_drifted > self.max_drifted_share or (
            error_ratio is not None and error_ratio > self.max_error_ratio
        )


@dataclass
class DriftSummary:
    """The outcome of one drift check, in plain values.

    `share_drifted` is len(drifted_columns) / len(columns): measured, never a configured
    threshold. `drift_detected` is only ever True when `enough_data` is."""

    columns: list[str]  # the columns tested
    drifted_columns: list[str]
    share_drifted: float
    scores: dict[str, dict[str, Any]]  # column -> method, score, threshold, drifted
    rows_reference: int
    rows_current: int
    reference_error: float | None
    current_error: float | None
    error_ratio: float | None
    enough_data: bool
    drift_detected: bool
    reasons: list[str]
    skipped_columns: dict[str, str] = field(default_factory=dict)  # column -> why not tested
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    html_path: str | None = None  # the Evidently report, when one was written

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON-ready values, e.g. for Dagster metadata or an MLflow log."""
        return {
            "columns": list(self.columns),
            "drifted_columns": list(self.drifted_columns),
            "share_drifted": self.share_drifted,
            "max_drifted_share": self.thresholds.max_drifted_share,
            "scores": {column: dict(score) for column, score in self.scores.items()},
            "skipped_columns": dict(self.skipped_columns),
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "reference_error": self.reference_error,
            "current_error": self.current_error,
            "error_ratio": self.error_ratio,
            "max_error_ratio": self.thresholds.max_error_ratio,
            "min_rows": self.thresholds.min_rows,
            "method": self.thresholds.method,
            "column_threshold": self.thresholds.column_threshold,
            "per_column_thresholds": dict(self.thresholds.per_column),
            "enough_data": self.enough_data,
            "drift_detected": self.drift_detected,
            "reasons": list(self.reasons),
            "html_path": self.html_path,
        }


def drift_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    thresholds: DriftThresholds,
    reference_error: float | None = None,
    current_error: float | None = None,
    html_path: Path | None = None,
) -> DriftSummary:
    """Compare `current` with `reference` on the numeric `columns` with Evidently's per-column
    drift tests, and the current error with the reference error.

    Infinities count as missing. A column with fewer than `min_rows` values in either frame
    (an all-NaN column has none) is skipped and listed with the reason. With fewer than
    `min_rows` rows in either frame, or no column left to test, nothing is decided:
    `enough_data` and `drift_detected` are False and the reasons say "insufficient data".
    With `html_path`, Evidently's DataDriftPreset report is written there; that costs 2.5 to
    4 times the plain run, since the preset tests every column twice more for its tables."""
    _check_columns(reference, current, columns)
    rows_reference, rows_current = len(reference), len(current)
    error_ratio, error_note = _error_ratio(reference_error, current_error)
    reasons: list[str] = []
    if error_note:
        reasons.append(error_note)

    def undecided(why: str, skipped: dict[str, str]) -> DriftSummary:
        return DriftSummary(
            columns=[],
            drifted_columns=[],
            share_drifted=0.0,
            scores={},
            rows_reference=rows_reference,
            rows_current=rows_current,
            reference_error=_plain(reference_error),
            current_error=_plain(current_error),
            error_ratio=error_ratio,
            enough_data=False,
            drift_detected=False,
            reasons=[f"insufficient data: {why}; drift not decided", *reasons],
            skipped_columns=skipped,
            thresholds=thresholds,
        )

    if min(rows_reference, rows_current) < thresholds.min_rows:
        return undecided(
            f"{rows_reference} reference and {rows_current} current rows, "
            f"at least {thresholds.min_rows} of each needed",
            {},
        )

    reference_values = _finite_values(reference, columns)
    current_values = _finite_values(current, columns)
    skipped = _too_few_values(reference_values, current_values, columns, thresholds.min_rows)
    tested = [c for c in columns if c not in skipped]
    if skipped:
        reasons.append(
            "skipped " + ", ".join(f"{column} ({why})" for column, why in skipped.items())
        )
    if not tested:
        return undecided("no column has enough values in both frames", skipped)

    snapshot = _run_evidently(
        reference_values[tested], current_values[tested], tested, thresholds, html_path
    )
    scores = column_verdicts(snapshot.dict(), tested)
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))

    drifted_columns = [c for c in tested if scores[c]["drifted"]]
    share_drifted = len(drifted_columns) / len(tested)  # measured, from per-column verdicts
    share_exceeded = share_drifted > thresholds.max_drifted_share
    error_exceeded = error_ratio is not None and error_ratio > thresholds.max_error_ratio

    verb = "above" if share_exceeded else "within"
    reasons.insert(
        0,
        f"{len(drifted_columns)} of {len(tested)} columns drifted: share {share_drifted:.2f}, "
        f"{verb} the limit {thresholds.max_drifted_share:.2f}"
        + (f" ({', '.join(drifted_columns)})" if drifted_columns else ""),
    )
    if error_ratio is not None:
        verb = "above" if error_exceeded else "within"
        judged = (
            f"{verb} the limit {thresholds.max_error_ratio:.2f}"
            if math.isfinite(thresholds.max_error_ratio)
            else "reported, not judged"
        )
        reasons.insert(
            1,
            f"error ratio {error_ratio:.2f} (current {current_error:.4g} / reference "
            f"{reference_error:.4g}), {judged}",
        )

    return DriftSummary(
        columns=tested,
        drifted_columns=drifted_columns,
        share_drifted=share_drifted,
        scores=scores,
        rows_reference=rows_reference,
        rows_current=rows_current,
        reference_error=_plain(reference_error),
        current_error=_plain(current_error),
        error_ratio=error_ratio,
        enough_data=True,
        drift_detected=thresholds.exceeded(share_drifted, error_ratio),
        reasons=reasons,
        skipped_columns=skipped,
        thresholds=thresholds,
        html_path=str(html_path) if html_path is not None else None,
    )


REFERENCE_ROWS = 20_000
ORDINARY_DAY_QUANTILE = 0.99


def relative_error(forecast: pd.Series, actual: pd.Series) -> float | None:
    """Mean absolute error over the mean actual: comparable across levels and regimes."""
    known = forecast.notna() & actual.notna()
    if not known.any() or actual[known].mean() == 0:
        return None
    return float((forecast[known] - actual[known]).abs().mean() / actual[known].mean())


@dataclass(frozen=True)
class DriftReference:
    """What a champion's days are compared with, kept with its model version.

    `rows`: the drift view of the days it learnt from, or an even sample of them (every season
    the window holds). `thresholds`: per column, `ordinary_limit` of those days' normed
    Wasserstein distances from `rows`: how far one ordinary day of this network strays (a day
    is a narrow slice of a year's weather; one fixed distance for every column and place
    alarms on most ordinary days).
    `error`: the relative 1 h error on held-out days."""

    rows: pd.DataFrame
    thresholds: dict[str, float]
    error: float | None = None


def drift_reference(
    view: pd.DataFrame,
    days: pd.Series,
    error: float | None = None,
    quantile: float = ORDINARY_DAY_QUANTILE,
    max_rows: int = REFERENCE_ROWS,
) -> DriftReference:
    """The reference of a training window's drift `view` (`days`: each row's day, on the
    view's index): `reference_rows_and_distances`, and each column's `ordinary_limit` of its
    days' distances. Columns with fewer than 7 judged days get no threshold (not judged)."""
    rows, distances = reference_rows_and_distances(view, days, max_rows)
    limits = {column: ordinary_limit(values, quantile) for column, values in distances.items()}
    return DriftReference(rows, {c: v for c, v in limits.items() if math.isfinite(v)}, error)


def reference_rows_and_distances(
    view: pd.DataFrame, days: pd.Series, max_rows: int = REFERENCE_ROWS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference rows of a drift `view` (all, or an even sample of `max_rows`;
    deterministic), and each day's column distances from the rows of the other days, as a
    new day's will be: a day of a few weeks' window is a tenth of the rows it would
    otherwise be compared with, and looked ordinary for it."""
    rows = view if len(view) <= max_rows else view.sample(n=max_rows, random_state=0).sort_index()
    row_days = days.loc[rows.index].to_numpy()
    rows = rows.reset_index(drop=True)
    return rows, day_distances(rows, view, days, reference_days=row_days)


def ordinary_limit(distances: pd.Series, quantile: float = ORDINARY_DAY_QUANTILE) -> float:
    """The distance a new ordinary day stays below with probability `quantile`, from the
    distances of `n` reference days (NaN: unknown) as split conformal reads it: the
    ceil((n + 1) q)-th smallest, and the largest when n is too few for that (n < 99 at 0.99).
    An interpolated quantile of a few weeks' days sits below their largest, so a short
    reference alarmed on ordinary days. NaN with fewer than 7 days."""
    values = np.sort(distances.dropna().to_numpy(dtype="float64"))
    if values.size < 7:
        return math.nan
    return float(values[min(math.ceil((values.size + 1) * quantile), values.size) - 1])


def day_distances(
    reference: pd.DataFrame,
    view: pd.DataFrame,
    days: pd.Series,
    min_values: int = 24,
    reference_days: np.ndarray | None = None,
) -> pd.DataFrame:
    """`column_distances` of each day of `view` from `reference`, a row per day; with the
    day of each reference row (`reference_days`), from the rows of the other days."""
    columns = list(view.columns)
    ref = reference[columns].to_numpy(dtype="float64", na_value=np.nan)
    cur = view[columns].to_numpy(dtype="float64", na_value=np.nan)
    day_of = days.to_numpy()
    by_day = {}
    for day in pd.unique(day_of):
        others = ref if reference_days is None else ref[reference_days != day]
        today = cur[day_of == day]
        by_day[day] = [
            _distance(others[:, j], today[:, j], min_values) for j in range(len(columns))
        ]
    return pd.DataFrame.from_dict(by_day, orient="index", columns=columns)


def column_distances(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], min_values: int = 24
) -> dict[str, float]:
    """Per column, the Wasserstein distance over the reference's standard deviation: the
    statistic of Evidently's "wasserstein" test, computed by SciPy (a year of days in a
    second). NaN where either side has fewer than `min_values` finite values."""
    return {
        column: _distance(
            reference[column].to_numpy(dtype="float64", na_value=np.nan),
            current[column].to_numpy(dtype="float64", na_value=np.nan),
            min_values,
        )
        for column in columns
    }


def _distance(reference: np.ndarray, current: np.ndarray, min_values: int) -> float:
    ref, cur = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(ref) < min_values or len(cur) < min_values:
        return math.nan
    return float(wasserstein_distance(ref, cur)) / max(float(np.std(ref)), 0.001)


def column_verdicts(snapshot: dict[str, Any], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Evidently's per-column drift verdicts from `Snapshot.dict()` (Evidently 0.7).

    Each tested column has a `ValueDrift` metric in `metrics` (`config.column`,
    `config.method`, `config.threshold`, `value` = the score: a p-value or a distance) and,
    since the report runs with `include_tests=True`, a test in `tests` with `id == "drift"`,
    `metric_config.metric_id` = that metric's `id`, and `status` "FAIL" (drifted) or "SUCCESS".
    Dataset-level entries (DriftedColumnsCount and its `drift_share`) are ignored on purpose."""
    metrics = {
        m["id"]: m
        for m in snapshot["metrics"]
        if m.get("config", {}).get("type") == _VALUE_DRIFT_TYPE
    }
    verdicts: dict[str, dict[str, Any]] = {}
    for test in snapshot["tests"]:
        metric = metrics.get(test.get("metric_config", {}).get("metric_id"))
        if test.get("id") != _VALUE_DRIFT_TEST_ID or metric is None:
            continue
        status = str(getattr(test["status"], "value", test["status"]))
        if status not in (_TEST_DRIFTED, _TEST_NOT_DRIFTED):
            raise RuntimeError(f"Evidently drift test for {metric['config']['column']}: {status}")
        config = metric["config"]
        verdicts[config["column"]] = {
            "method": str(config["method"]),
            "score": float(metric["value"]),
            "threshold": float(config["threshold"]),
            "drifted": status == _TEST_DRIFTED,
        }
    missing = [c for c in columns if c not in verdicts]
    if missing:
        raise RuntimeError(
            f"Evidently returned no drift verdict for {missing}; has its snapshot format changed?"
        )
    return {c: verdicts[c] for c in columns}


def ks_drift(reference: np.ndarray, current: np.ndarray, alpha: float = 0.05) -> tuple[float, bool]:
    """Two-sample Kolmogorov-Smirnov test of one column, NaN and infinities removed: the
    p-value and whether it is at most `alpha` (drifted; `<=` as in Evidently's K-S test)."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError("ks_drift needs at least one finite value in each sample")
    p_value = float(ks_2samp(ref, cur).pvalue)
    return p_value, p_value <= alpha


def ks_drift_frame(
    reference_df: pd.DataFrame, current_df: pd.DataFrame, columns: list[str], alpha: float = 0.05
) -> float:
    """The measured share of `columns` that drifted by `ks_drift`, the plain NumPy/SciPy
    baseline; columns without a finite value in either frame are left out."""
    drifted = tested = 0
    for column in columns:
        ref = reference_df[column].to_numpy(dtype="float64", na_value=np.nan)
        cur = current_df[column].to_numpy(dtype="float64", na_value=np.nan)
        if not (np.isfinite(ref).any() and np.isfinite(cur).any()):
            continue
        tested += 1
        drifted += ks_drift(ref, cur, alpha)[1]
    if tested == 0:
        raise ValueError("no column has a finite value in both frames")
    return drifted / tested


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    thresholds: DriftThresholds,
    html_path: Path | None,
) -> Any:
    """One Evidently report with a `ValueDrift` test per column. For an HTML report the
    DataDriftPreset is used instead: the same `ValueDrift` tests plus the dataset table users
    know, whose `drift_share` is set to our limit so the page agrees with the check (Evidently
    flags a share >= it; the check, a share > it)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    items: list[Any]
    if html_path is None:
        items = [
            ValueDrift(column=c, method=thresholds.method, threshold=thresholds.threshold_of(c))
            for c in columns
        ]
    else:
        items = [
            DataDriftPreset(
                columns=columns,
                method=thresholds.method,
                threshold=thresholds.column_threshold,
                per_column_threshold={
                    c: thresholds.per_column[c] for c in columns if c in thresholds.per_column
                }
                or None,
                drift_share=thresholds.max_drifted_share,
            )
        ]
    definition = DataDefinition(numerical_columns=columns)
    return Report(items, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> None:
    if not columns:
        raise ValueError("drift_summary needs at least one column")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} frame lacks columns {missing}")
        not_numeric = [
            c
            for c in columns
            if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
        ]
        if not_numeric:
            raise TypeError(f"{name} columns {not_numeric} are not numeric")


def _finite_values(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    values = frame[columns].astype("float64")
    return values.where(np.isfinite(values.to_numpy()))


def _too_few_values(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], min_values: int
) -> dict[str, str]:
    skipped: dict[str, str] = {}
    counts = {"reference": reference.count(), "current": current.count()}
    for column in columns:
        short = [
            f"no {name} values" if count[column] == 0 else f"only {count[column]} {name} values"
            for name, count in counts.items()
            if count[column] < min_values
        ]
        if short:
            skipped[column] = " and ".join(short)
    return skipped


def _error_ratio(
    reference_error: float | None, current_error: float | None
) -> tuple[float | None, str | None]:
    if reference_error is None or current_error is None:
        return None, None
    if not (math.isfinite(reference_error) and math.isfinite(current_error)):
        return None, "error ratio not computed: an error is not a finite number"
    if reference_error <= 0:
        return None, f"error ratio not computed: reference error is {reference_error}"
    return float(current_error) / float(reference_error), None


def _plain(value: float | None) -> float | None:
    return None if value is None else float(value)
