"""Rolling-origin backtests: judging a way of training on many origins, not one fortnight.

At each origin a forecaster is trained on the rows before it (as `forecast_model` would have
been on that day) and scored on the weeks after it, beside the baselines on the same rows.
Errors are kept as sums so they pool exactly: over a dataset's origins, over a season, or
per origin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from aq_assets.ml.evaluation import BASELINES, beside_baselines
from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.intervals import INTERVALS, interval_scores, recent_of
from aq_assets.ml.model import Forecaster

SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM"}
SEASONS |= {6: "JJA", 7: "JJA", 8: "JJA", 9: "SON", 10: "SON", 11: "SON"}

Fit = Callable[[pd.DataFrame, FeatureSpec], Forecaster]


def rolling_origins(
    times: pd.Series, min_train_days: int, step_days: int, test_days: int
) -> list[pd.Timestamp]:
    """Midnights from `min_train_days` after the first hour, every `step_days`, while a whole
    test period of `test_days` still fits before the last hour."""
    first = times.min().ceil("D") + pd.Timedelta(days=min_train_days)
    last = times.max().floor("D") - pd.Timedelta(days=test_days)
    if first > last:
        return []
    return list(pd.date_range(first, last, freq=f"{step_days}D"))


def origins_before(end: pd.Timestamp, count: int, step_days: int) -> list[pd.Timestamp]:
    """The `count` origins every `step_days` whose test periods tile the days before `end`."""
    return [end - pd.Timedelta(days=step_days * k) for k in range(count, 0, -1)]


def backtest(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    origins: list[pd.Timestamp],
    fit: Fit,
    window_days: int,
    test_days: int,
    thresholds: Sequence[float] = (),
) -> pd.DataFrame:
    """Squared and absolute error sums per (origin, season, horizon, forecaster) over the rows
    where the target and every forecaster's value exist. `frame` holds feature rows of the
    whole period (features look back only); each fit sees the `window_days` before its origin,
    and no row whose target lies at or after the origin. The model's rows also carry the sums
    of `distribution_scores` (its intervals, and exceedance of each of `thresholds`)."""
    times = frame["datetime_utc"]
    pieces = []
    # Climatology is each fit's own (from its history); the other baselines only look back.
    for origin in origins:
        history = known_at(
            frame[(times >= origin - pd.Timedelta(days=window_days)) & (times < origin)],
            origin,
            spec,
        )
        test = frame[(times >= origin) & (times < origin + pd.Timedelta(days=test_days))]
        if history.empty or test.empty:
            continue
        try:
            forecaster = fit(history, spec)
        except ValueError:  # too little to learn from (a long gap): no model at this origin
            continue
        point = forecaster.predict(test)
        forecasts = beside_baselines({"model": point}, frame, history, test, spec)
        scores = distribution_scores(forecaster, point, test, history, thresholds)
        pieces.append(error_sums(test, forecasts, spec, scores).assign(origin=origin))
    if not pieces:
        return pd.DataFrame(
            columns=["origin", "season", "horizon", "forecaster", "n", "sse", "sae"]
        )
    return pd.concat(pieces, ignore_index=True)


def known_at(history: pd.DataFrame, origin: pd.Timestamp, spec: FeatureSpec) -> pd.DataFrame:
    """`history` with every target that lies at or after `origin` unknown, as it was then."""
    history = history.copy()
    for h in spec.horizons:
        unknown = history["datetime_utc"] + pd.Timedelta(hours=h) >= origin
        history.loc[unknown, f"target_h{h}"] = np.nan
    return history


def distribution_scores(
    forecaster: Forecaster,
    point: pd.DataFrame,
    test: pd.DataFrame,
    history: pd.DataFrame,
    thresholds: Sequence[float],
) -> dict[int, pd.DataFrame] | None:
    """Per horizon, per test row: that it is scored (`scored`, 1), whether the 80% and 90%
    intervals cover the value, their widths, the mean pinball loss of the quantiles, and for
    each threshold T the squared error of the exceedance probability (`brier_T`), of the
    sensor's climatological frequency of exceeding it in `history` (`brier_ref_T`), and whether
    it was exceeded (`exceeded_T`).
    None for a forecaster without intervals."""
    intervals = forecaster.intervals
    if intervals is None:
        return None
    spec = forecaster.spec
    forecast = point[[f"h{h}" for h in spec.horizons]].to_numpy(dtype="float64")
    truths = test[spec.target_columns].to_numpy(dtype="float64")
    recent = recent_of(test)
    per_row = interval_scores(intervals, forecast, truths, recent)
    exceedance = intervals.exceedance(forecast, thresholds, recent)
    # The reference forecast of an exceedance: how often the sensor exceeded it before.
    references = []
    for threshold in thresholds:
        exceeded_before = (history["y"] > threshold).groupby(history["sensor_id"]).mean()
        overall = float((history["y"] > threshold).mean())
        references.append(test["sensor_id"].map(exceeded_before).fillna(overall).to_numpy())
    out = {}
    for j, h in enumerate(spec.horizons):
        truth = truths[:, j]
        columns = {"scored": np.ones(len(truth))}
        columns |= {name: values[:, j] for name, values in per_row.items()}
        for k, (threshold, reference) in enumerate(zip(thresholds, references, strict=True)):
            exceeded = (truth > threshold).astype(float)
            columns[f"brier_{threshold:g}"] = (exceedance[:, j, k] - exceeded) ** 2
            columns[f"brier_ref_{threshold:g}"] = (reference - exceeded) ** 2
            columns[f"exceeded_{threshold:g}"] = exceeded
        out[h] = pd.DataFrame(columns)
    return out


def error_sums(
    test: pd.DataFrame,
    forecasts: dict[str, pd.DataFrame],
    spec: FeatureSpec,
    model_scores: dict[int, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Per (season, horizon, forecaster): rows n, squared error sum sse, absolute error sum
    sae, each horizon over the rows where the target and every forecast exist; the model's
    rows also sum `model_scores` (`distribution_scores`) over the same rows."""
    season = test["datetime_utc"].dt.month.map(SEASONS)
    rows = []
    for h in spec.horizons:
        target = test[f"target_h{h}"].to_numpy(dtype="float64")
        valid = ~np.isnan(target)
        for forecast in forecasts.values():
            valid &= forecast[f"h{h}"].notna().to_numpy()
        for name, forecast in forecasts.items():
            error = forecast[f"h{h}"].to_numpy(dtype="float64")[valid] - target[valid]
            errors = pd.DataFrame(
                {"season": season.to_numpy()[valid], "sse": error**2, "sae": np.abs(error)}
            )
            if name == "model" and model_scores is not None:
                scores = model_scores[h][valid].reset_index(drop=True)
                errors = pd.concat([errors, scores], axis=1)
            sums = {c: (c, "sum") for c in errors.columns if c != "season"}
            summary = errors.groupby("season").agg(n=("sse", "size"), **sums).reset_index()
            rows.append(summary.assign(horizon=h, forecaster=name))
    return pd.concat(rows, ignore_index=True)


def origins_table(sums: pd.DataFrame) -> str:
    """Markdown: per origin and horizon, the model's and the best baseline's RMSE and the
    model's skill over the best baseline, then the pooled figures."""
    per_origin = pooled_rmse(sums, ["origin"]).reset_index()
    pooled = pooled_rmse(sums, []).reset_index().assign(origin="pooled")
    table = pd.concat([per_origin.assign(origin=per_origin["origin"].astype(str)), pooled])
    return table[
        [
            "origin",
            "horizon",
            "model",
            "persistence",
            "climatology",
            "best_baseline",
            "skill_vs_best",
        ]
    ].to_markdown(index=False, floatfmt=".3f")


def pooled_rmse(sums: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """RMSE per `by` + horizon, forecasters as columns, with `best_baseline` (the lowest
    baseline RMSE of each row) and the model's `skill` over it and over persistence."""
    grouped = sums.groupby([*by, "horizon", "forecaster"])[["sse", "n"]].sum()
    rmse = np.sqrt(grouped["sse"] / grouped["n"]).unstack("forecaster")
    baselines = [b for b in BASELINES if b in rmse.columns]
    rmse["best_baseline"] = rmse[baselines].min(axis=1)
    rmse["skill_vs_best"] = 1 - rmse["model"] / rmse["best_baseline"]
    rmse["skill_vs_persistence"] = 1 - rmse["model"] / rmse["persistence"]
    return rmse


def pooled_distribution(sums: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The model's intervals and exceedance probabilities per `by` + horizon: coverage and
    mean width of the 80% and 90% intervals, mean pinball loss, and per threshold the Brier
    skill over the climatological frequency and how many hours exceeded it."""
    model = sums[sums["forecaster"] == "model"]
    if "covered80" not in model.columns:
        return pd.DataFrame()
    grouped = model.groupby([*by, "horizon"]).sum(numeric_only=True)
    # Over the rows scored: an origin whose forecaster has no intervals (too few calibration
    # rows) has none, and its rows count neither as covered nor as missed.
    scored = grouped["scored"]
    out = pd.DataFrame(index=grouped.index)
    for nominal in INTERVALS:
        out[f"coverage{nominal}"] = grouped[f"covered{nominal}"] / scored
        out[f"width{nominal}"] = grouped[f"width{nominal}"] / scored
    out["pinball"] = grouped["pinball"] / scored
    for column in grouped.columns:
        if column.startswith("brier_") and not column.startswith("brier_ref_"):
            threshold = column.removeprefix("brier_")
            out[f"brier_skill_{threshold}"] = (
                1 - grouped[column] / grouped[f"brier_ref_{threshold}"]
            )
            out[f"exceeded_{threshold}"] = grouped[f"exceeded_{threshold}"].astype(int)
    return out


def summary(sums: pd.DataFrame, tolerance: float = 0.02) -> dict[str, object]:
    """The headline figures: pooled skill per horizon, and the share of origins where the
    model is not worse than the best baseline by more than `tolerance` at every horizon."""
    pooled = pooled_rmse(sums, [])
    per_origin = pooled_rmse(sums, ["origin"])
    within = (per_origin["model"] <= per_origin["best_baseline"] * (1 + tolerance)).groupby(
        level="origin"
    )
    return {
        "origins": int(sums["origin"].nunique()),
        "skill_vs_best": pooled["skill_vs_best"].round(4).to_dict(),
        "skill_vs_persistence": pooled["skill_vs_persistence"].round(4).to_dict(),
        "origins_within_tolerance": float(within.all().mean()),
    }
