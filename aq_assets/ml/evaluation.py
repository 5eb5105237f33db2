"""Judging forecasts against the baselines a forecaster must beat, on the same rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.intervals import INTERVALS, interval_scores, recent_of
from aq_assets.ml.model import Forecaster, TimeSplit, days_at_most_a_quarter, train_forecaster

BASELINES = ("persistence", "same_hour_yesterday", "climatology")
# The fewest days with readings a candidate trains on: a held-out day and a validation day
# are set aside (a quarter each of longer histories), and the days left must still hold
# 24 h targets that do not reach into them. Fewer fail in `judge_candidate`.
MIN_TRAINING_DAYS = 8


def baseline_forecasts(
    frame: pd.DataFrame, train: pd.DataFrame, spec: FeatureSpec
) -> dict[str, pd.DataFrame]:
    """Forecast columns `h{h}` of each baseline for the rows of `frame`:
    persistence (the current level), same hour yesterday (the value at t+h-24, known at t),
    and hour-of-day climatology (each sensor's mean at that UTC hour over `train`)."""
    level = frame["level"]
    by_sensor = frame.groupby("sensor_id", sort=False)["y"]
    hour = frame["datetime_utc"].dt.hour
    climate = train.groupby(["sensor_id", train["datetime_utc"].dt.hour])["y"].mean()
    out: dict[str, dict[str, pd.Series]] = {name: {} for name in BASELINES}
    for h in spec.horizons:
        out["persistence"][f"h{h}"] = level
        out["same_hour_yesterday"][f"h{h}"] = (
            by_sensor.shift(24 - h) if h <= 24 else pd.Series(np.nan, index=frame.index)
        )
        target_hour = (hour + h) % 24
        keys = pd.MultiIndex.from_arrays([frame["sensor_id"], target_hour])
        out["climatology"][f"h{h}"] = pd.Series(climate.reindex(keys).to_numpy(), index=frame.index)
    return {name: pd.DataFrame(cols, index=frame.index) for name, cols in out.items()}


def beside_baselines(
    forecasts: dict[str, pd.DataFrame],
    context: pd.DataFrame,
    known: pd.DataFrame,
    rows: pd.DataFrame,
    spec: FeatureSpec,
) -> dict[str, pd.DataFrame]:
    """`forecasts` for `rows` and every baseline's for the same rows: persistence and
    same-hour-yesterday looking back in `context` (which holds `rows`), climatology from the
    rows that were `known`."""
    baselines = baseline_forecasts(context, known, spec)
    return {**forecasts, **{name: b.loc[rows.index] for name, b in baselines.items()}}


def evaluate(
    frame: pd.DataFrame,
    forecasts: dict[str, pd.DataFrame],
    spec: FeatureSpec,
) -> pd.DataFrame:
    """RMSE, MAE and skill over persistence per (forecaster, horizon), each horizon scored on
    the rows where the target and EVERY forecaster's value exist, so all compare like for like.
    Also the RMSE over the top 10% of targets (episodes), where a forecaster earns its keep."""
    rows = []
    for h in spec.horizons:
        target = frame[f"target_h{h}"]
        valid = target.notna()
        for forecast in forecasts.values():
            valid &= forecast[f"h{h}"].notna()
        truth = target[valid].to_numpy()
        episode = truth >= np.quantile(truth, 0.9) if len(truth) else np.zeros(0, dtype=bool)
        for name, forecast in forecasts.items():
            error = forecast.loc[valid, f"h{h}"].to_numpy() - truth
            rows.append(
                {
                    "forecaster": name,
                    "horizon": h,
                    "rows": int(valid.sum()),
                    "rmse": float(np.sqrt(np.mean(error**2))) if len(error) else np.nan,
                    "mae": float(np.mean(np.abs(error))) if len(error) else np.nan,
                    "rmse_episodes": float(np.sqrt(np.mean(error[episode] ** 2)))
                    if episode.any()
                    else np.nan,
                }
            )
    scores = pd.DataFrame(rows)
    persistence = scores[scores.forecaster == "persistence"].set_index("horizon")["rmse"]
    scores["skill"] = 1 - scores["rmse"] / scores["horizon"].map(persistence)
    return scores


def scores_table(scores: pd.DataFrame) -> str:
    """Markdown: one row per horizon, RMSE of each forecaster, and the model's skill."""
    pivot = scores.pivot(index="horizon", columns="forecaster", values="rmse")
    table = pivot.rename(columns=lambda c: f"RMSE {c}")
    if "model" in set(scores.forecaster):
        model = scores[scores.forecaster == "model"].set_index("horizon")
        table["MAE model"] = model["mae"]
        table["skill vs persistence"] = model["skill"]
        table["rows"] = model["rows"]
    return table.reset_index().to_markdown(index=False, floatfmt=".3f")


@dataclass
class Judged:
    """A candidate trained without the last held-out days, and its scores on them beside the
    baselines on the same rows."""

    candidate: Forecaster
    before: pd.DataFrame  # the rows it knew: its training and validation rows
    validation: pd.DataFrame
    holdout: pd.DataFrame
    point: pd.DataFrame  # the candidate's forecast of the held-out rows (`predict`)
    scores: pd.DataFrame
    holdout_days: int  # as used: at most a quarter of the days each
    validation_days: int
    intervals: pd.DataFrame | None = None  # `interval_summary`, cross-fitted (judge_candidate)
    daily: pd.DataFrame | None = None  # `daily_scores` of the holdout: the same, day by day

    def on_every_day(self, frame: pd.DataFrame) -> Forecaster:
        """The version to register: the candidate's rounds (chosen on the validation days),
        its blend fitted again on the validation and the held-out days (the newest it did not
        learn from), trained again on every row of `frame`, so it has learnt the newest days.
        Its intervals come from its errors on those same days."""
        return (
            self.candidate.blended_on(self.validation, self.holdout)
            .calibrated(self.validation, self.holdout)
            .refit(frame)
        )


def interval_summary(
    folds: Sequence[tuple[Forecaster, pd.DataFrame, pd.DataFrame]],
) -> pd.DataFrame | None:
    """Per horizon over the rows of every fold (a forecaster, rows its intervals were not
    calibrated on, and its `predict` of them) with a forecast and a target: how often the 80% and 90% intervals covered
    the value (`coverage80`, with `coverage80_se` its standard error from the day-to-day
    variation over `coverage_days` days: hours of one day share its weather), their mean
    widths and the mean pinball loss; None when the first forecaster has no intervals (a
    later one without is left out)."""
    if not folds or folds[0][0].intervals is None:
        return None
    spec = folds[0][0].spec
    parts, scored = [], []
    for forecaster, frame, point in folds:
        if forecaster.intervals is None:
            continue
        forecast = point[[f"h{h}" for h in spec.horizons]].to_numpy(dtype="float64")
        truth = frame[spec.target_columns].to_numpy(dtype="float64")
        parts.append(interval_scores(forecaster.intervals, forecast, truth, recent_of(frame)))
        scored.append(frame)
    scores = {name: np.vstack([part[name] for part in parts]) for name in parts[0]}
    known = np.isfinite(scores["pinball"])
    summary = pd.DataFrame(
        {
            "horizon": list(spec.horizons),
            "rows": known.sum(axis=0),
            **{
                name.replace("covered", "coverage"): np.nanmean(values, axis=0)
                if known.any()
                else np.full(len(spec.horizons), np.nan)
                for name, values in scores.items()
            },
        }
    )
    days = np.concatenate([frame["datetime_utc"].dt.floor("D").to_numpy() for frame in scored])
    for nominal in INTERVALS:
        daily = pd.DataFrame(scores[f"covered{nominal}"]).groupby(days).mean()
        summary[f"coverage{nominal}_se"] = (daily.std() / np.sqrt(daily.count())).to_numpy()
    summary["coverage_days"] = daily.count().to_numpy()  # the same days for each interval
    return summary


def judge_candidate(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    holdout_days: int = 14,
    validation_days: int = 14,
    max_rounds: int = 3000,
) -> Judged:
    """Train on `frame` less its last `holdout_days` days with readings (rounds and blend
    chosen on the `validation_days` before them; each at most a quarter of the days, so short
    histories still train) and score on the held-out days: persistence and
    same-hour-yesterday look back in `frame`, climatology is that of the rows before the
    holdout."""
    # Days count where a sensor has a current level: a gap's days hold nothing to judge.
    read = frame.loc[frame["level"].notna(), "datetime_utc"]
    holdout_days = days_at_most_a_quarter(read, holdout_days)
    validation_days = days_at_most_a_quarter(read, validation_days)
    split = TimeSplit.last_days(read, holdout_days, validation_days)
    train, validation, holdout = split.parts(frame, max(spec.horizons))
    before = pd.concat([train, validation])
    candidate = train_forecaster(train, validation, spec, max_rounds=max_rounds)
    point = candidate.predict(holdout)
    # The registered version's intervals are calibrated on both fortnights, so they are judged
    # cross-fitted: calibrated on the validation days and scored on the held-out ones, and
    # calibrated on the held-out days and scored on the validation ones. One fortnight alone
    # is a few days of one weather: intervals from a calm fortnight covered 58-60% of a stormy
    # one, where the registered version's covered 75-81% of the weeks after.
    folds = [(candidate, holdout, point)]
    if candidate.intervals is not None:
        other = candidate.calibrated(holdout)
        if other.intervals is not None:  # enough held-out rows to calibrate on
            folds.append((other, validation, other.predict(validation)))
    forecasts = beside_baselines({"model": point}, frame, before, holdout, spec)
    scores = evaluate(holdout, forecasts, spec)
    return Judged(
        candidate,
        before,
        validation,
        holdout,
        point,
        scores,
        holdout_days,
        validation_days,
        interval_summary(folds),
        daily_scores(holdout, forecasts, spec),
    )


def daily_scores(
    frame: pd.DataFrame, forecasts: dict[str, pd.DataFrame], spec: FeatureSpec
) -> pd.DataFrame:
    """`evaluate` of `forecasts` on the rows of `frame` made on each day (by the origin's
    UTC day), a row per (day, horizon, forecaster): what `loss_differential` reads."""
    days = frame["datetime_utc"].dt.floor("D")
    return pd.concat(
        [
            evaluate(rows, {n: f.loc[rows.index] for n, f in forecasts.items()}, spec).assign(
                day=day
            )
            for day, rows in frame.groupby(days)
        ],
        ignore_index=True,
    )


def scores_of_day(
    rows: pd.DataFrame,
    forecasts: pd.DataFrame,
    known: pd.DataFrame,
    spec: FeatureSpec,
    day_start: pd.Timestamp,
) -> pd.DataFrame:
    """`evaluate` of `forecasts` (`h{h}` columns, indexed like the origin rows of `rows` they
    were made at) on the targets that fall on the day starting `day_start`, beside every
    baseline on the same rows: persistence and same-hour-yesterday looking back in `rows`,
    climatology the hourly means of `known`."""
    day_end = day_start + pd.Timedelta(days=1)
    scoped = rows.loc[forecasts.index].copy()
    for h in spec.horizons:
        target_at = scoped["datetime_utc"] + pd.Timedelta(hours=h)
        on_day = (target_at >= day_start) & (target_at < day_end)
        scoped[f"target_h{h}"] = scoped[f"target_h{h}"].where(on_day)
    named = beside_baselines({"champion": forecasts}, rows, known, scoped, spec)
    return evaluate(scoped, named, spec).drop(columns="skill")


def loss_differential(
    daily: pd.DataFrame, model: str = "champion", min_days: int = 7, alpha: float = 0.05
) -> pd.DataFrame:
    """Per horizon, is `model` worse than the best baseline with evidence over days? A
    Diebold-Mariano test on daily squared-error differentials: `daily` holds a row per
    (day, horizon, forecaster) with `rmse` and `rows`; the best baseline is the one with the
    lowest RMSE pooled over the days; the differential's variance is Newey-West with one
    lag (a bad day tends to follow a bad day). `worse` needs `min_days` days, a positive mean
    differential and a one-sided p-value below `alpha`."""
    from scipy.stats import t as student_t

    daily = daily.astype({"rmse": "float64", "rows": "int64"})
    daily = daily.assign(sse=daily["rmse"] ** 2 * daily["rows"])
    out = []
    for h, by_horizon in daily[daily["rows"] > 0].groupby("horizon"):
        pooled = by_horizon.groupby("forecaster")[["sse", "rows"]].sum()
        rmse = np.sqrt(pooled["sse"] / pooled["rows"])
        baselines = rmse.drop(model, errors="ignore").reindex(list(BASELINES)).dropna()
        if model not in rmse or baselines.empty:
            continue
        best = str(baselines.idxmin())
        mse = by_horizon.pivot(index="day", columns="forecaster", values="rmse") ** 2
        differential = (mse[model] - mse[best]).dropna().to_numpy()
        days = len(differential)
        mean = float(differential.mean()) if days else np.nan
        p_value = np.nan
        if days >= 2:
            centred = differential - mean
            variance = np.mean(centred**2) + 2 * 0.5 * np.mean(centred[1:] * centred[:-1])
            stderr = np.sqrt(max(variance, 1e-12) / days)
            p_value = float(student_t.sf(mean / stderr, df=days - 1))
        out.append(
            {
                "horizon": int(h),
                "best_baseline": best,
                "days": days,
                "rmse_model": float(rmse[model]),
                "rmse_best_baseline": float(baselines[best]),
                "skill_vs_best": float(1 - rmse[model] / baselines[best]),
                "mean_mse_differential": mean,
                "p_value": p_value,
                "worse": bool(days >= min_days and mean > 0 and p_value < alpha),
            }
        )
    return pd.DataFrame(out)
