"""Rolling-origin backtests: judging a way of training on many origins, not one fortnight.

At each origin a forecaster is trained on the rows before it (as `forecast_model` would have
been on that day) and scored on the weeks after it, beside the baselines on the same rows.
Errors are kept as sums so they pool exactly: over a dataset's origins, over a season, or
per origin.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from aq_assets.ml.evaluation import BASELINES, beside_baselines
from aq_assets.ml.features import FeatureSpec
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
) -> pd.DataFrame:
    """Squared and absolute error sums per (origin, season, horizon, forecaster) over the rows
    where the target and every forecaster's value exist. `frame` holds feature rows of the
    whole period (features look back only); each fit sees the `window_days` before its origin,
    and no row whose target lies at or after the origin."""
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
        forecasts = beside_baselines(
            {"model": forecaster.predict(test)}, frame, history, test, spec
        )
        pieces.append(error_sums(test, forecasts, spec).assign(origin=origin))
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


def error_sums(
    test: pd.DataFrame, forecasts: dict[str, pd.DataFrame], spec: FeatureSpec
) -> pd.DataFrame:
    """Per (season, horizon, forecaster): rows n, squared error sum sse, absolute error sum
    sae, each horizon over the rows where the target and every forecast exist."""
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
                {"season": season.to_numpy()[valid], "se": error**2, "ae": np.abs(error)}
            )
            summary = (
                errors.groupby("season")
                .agg(n=("se", "size"), sse=("se", "sum"), sae=("ae", "sum"))
                .reset_index()
            )
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
