"""Drift's false alarms and detections on every real set in ../shared/data.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drift_calibration.py [--sets poland]
        [--reference-days 365] [--cache DIR]

The question `drift_report` answers each day: do the day's scale-free feature views
(`drift_view`) still look like the champion's training window? Here a champion is trained
at an origin every few weeks (the origins of `forecast_quality.py`); its reference is the
view of the `--reference-days` before the origin (`drift_reference`, as `forecast_model`
keeps it); each day up to the next origin is judged against it by Evidently's normed
Wasserstein distance per column (`column_distances`: the same statistic computed by SciPy,
so a sweep is cheap; one day is checked against Evidently itself). Nothing is injected on the
clean pass, so every alarm there is a false alarm. Then the readings are changed from a
quarter of the way to the next origin until it (days 7-27 on a 4-week step), one kind at a
time: one sensor reads x1.5, one sensor is stuck at its last value, every target sensor
reads x1.5; a rule catches an episode when it alarms on its first or second day.

Rules: a column drifts past a fixed distance (`fixed 0.6`: the shipped rule before this
benchmark), or past the `q` quantile of its own ordinary days' distances in the reference
window (`own q`); the day drifts when more than `share` of the columns drift, and the alarm
needs that on `days` consecutive days. Prints per dataset the false alarms per 30 days and
the share of episodes caught.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_quality import MIRROR, SHARED_SETS, Schedule, datasets_of, readings_of

from aq_assets.defs.ingest.catalog import timezones_of
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.drift import (
    DriftThresholds,
    column_distances,
    drift_reference,
    drift_summary,
    ordinary_limit,
    reference_rows_and_distances,
)
from aq_assets.ml.features import FeatureSpec, build_features, drift_view

QUANTILES = (0.95, 0.99, 1.0)
FIXED = (0.6, 1.0)
SHARES = (0.0, 0.25, 0.5)
CONFIRM_DAYS = (1, 2)

Injection = Callable[[pd.DataFrame, pd.Series, int], pd.Series]


def one_sensor_level(readings: pd.DataFrame, on: pd.Series, sensor: int) -> pd.Series:
    hit = on & (readings["sensor_id"] == sensor)
    return readings["value"].where(~hit, readings["value"] * 1.5)


def every_sensor_level(readings: pd.DataFrame, on: pd.Series, sensor: int) -> pd.Series:
    hit = on & (readings["parameter"] == "pm25")
    return readings["value"].where(~hit, readings["value"] * 1.5)


def one_sensor_stuck(readings: pd.DataFrame, on: pd.Series, sensor: int) -> pd.Series:
    mine = readings["sensor_id"] == sensor
    before = readings.loc[mine & ~on, "value"].dropna()
    level = float(before.iloc[-1]) if len(before) else 10.0
    return readings["value"].where(~(on & mine), level)


INJECTIONS: dict[str, Injection] = {
    "one sensor x1.5": one_sensor_level,
    "one sensor stuck": one_sensor_stuck,
    "every sensor x1.5": every_sensor_level,
}


def views(readings: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, int]:
    """The drift view of every row with a reading, each row's day, and the first target."""
    hourly, _ = clean_readings(readings)
    targets = sorted(hourly.loc[hourly["parameter"] == "pm25", "sensor_id"].unique())
    spec = FeatureSpec(parameter="pm25").with_sensors(targets)
    frame = build_features(hourly, spec, timezones_of(catalog))
    view = drift_view(frame, spec)
    return view, frame.loc[view.index, "datetime_utc"].dt.floor("D"), int(targets[0])


def judged_days(
    view: pd.DataFrame,
    days: pd.Series,
    origins: list[pd.Timestamp],
    step_days: int,
    reference_days: int,
    thresholds: dict[pd.Timestamp, pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, dict[pd.Timestamp, pd.DataFrame]]:
    """Each judged day's column distances from its origin's reference, and per origin the
    distances of the reference window's own days (computed when `thresholds` is None)."""
    columns = list(view.columns)
    rows, own = [], thresholds if thresholds is not None else {}
    for origin in origins:
        window = (days < origin) & (days >= origin - pd.Timedelta(days=reference_days))
        reference, own_distances = reference_rows_and_distances(view[window], days[window])
        if thresholds is None:
            own[origin] = own_distances
        for k in range(step_days):
            day = origin + pd.Timedelta(days=k)
            distances = column_distances(reference, view[days == day], columns)
            rows.append({"origin": origin, "day": day, **distances})
    return pd.DataFrame(rows), own


def alarms(scores: pd.DataFrame, limits: pd.DataFrame, share: float, confirm: int) -> pd.Series:
    """Whether the rule alarms on each day: more than `share` of the tested columns past
    their limit (a row of `limits` per origin), on `confirm` consecutive days."""
    columns = [c for c in scores.columns if c not in ("origin", "day")]
    values = scores[columns]
    limit = limits.loc[scores["origin"], columns].to_numpy()
    tested = (values.notna() & np.isfinite(limit)).sum(axis=1)
    drifted = (values.to_numpy() >= limit).sum(axis=1)
    daily = (tested > 0) & (drifted / tested.where(tested > 0) > share)
    if confirm == 1:
        return daily
    run = daily.groupby(scores["origin"]).transform(
        lambda d: d.rolling(confirm, min_periods=confirm).sum() == confirm
    )
    return run.astype(bool)


def limit_tables(
    own: dict[pd.Timestamp, pd.DataFrame], columns: list[str]
) -> dict[str, pd.DataFrame]:
    """Per rule name, the per-origin column limits."""
    tables = {}
    for q in QUANTILES:
        rows = {origin: d.apply(ordinary_limit, quantile=q) for origin, d in own.items()}
        tables[f"own {q:g}"] = pd.DataFrame.from_dict(rows, orient="index")[columns]
    # The rule before 2026-12-07 night: the quantile interpolated between days.
    rows = {origin: d.quantile(0.99).where(d.count() >= 7) for origin, d in own.items()}
    tables["own 0.99 interpolated"] = pd.DataFrame.from_dict(rows, orient="index")[columns]
    for fixed in FIXED:
        tables[f"fixed {fixed:g}"] = pd.DataFrame(fixed, index=list(own), columns=columns)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default=",".join(SHARED_SETS))
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="an OpenAQ archive mirror")
    parser.add_argument("--reference-days", type=int, default=365)
    parser.add_argument("--cache", type=Path, default=Path(".aq/benchmark-readings"))
    args = parser.parse_args()
    for dataset in datasets_of(args.sets, args.mirror):
        readings, catalog = readings_of(dataset, args.cache)
        view, days, target = views(readings, catalog)
        schedule = Schedule.of(days)
        origins = schedule.origins(days)
        if not origins:
            print(f"\n## {dataset.name}: too short for an origin ({schedule}); skipped")
            continue
        clean, own = judged_days(view, days, origins, schedule.step_days, args.reference_days)
        start, length = schedule.step_days // 4, schedule.step_days - schedule.step_days // 4
        starts = [o + pd.Timedelta(days=start) for o in origins]
        injected = {s + pd.Timedelta(days=k) for s in starts for k in range(length)}
        on = readings["datetime_utc"].dt.floor("D").isin(injected)
        episodes = {}
        for kind, inject in INJECTIONS.items():
            changed_view, changed_days, _ = views(
                readings.assign(value=inject(readings, on, target)), catalog
            )
            # The champion learnt from clean days: its reference never holds an episode.
            kept = ~changed_days.isin(injected) | (changed_days >= origins[-1])
            episodes[kind], _ = judged_days(
                changed_view[kept | changed_days.isin(injected)],
                changed_days[kept | changed_days.isin(injected)],
                origins,
                schedule.step_days,
                args.reference_days,
                thresholds=own,
            )
        check_against_evidently(view, days, args.reference_days, clean)

        columns = list(view.columns)
        print(
            f"\n## {dataset.name}: {view.shape[0]} rows, {len(origins)} origins, "
            f"{len(clean)} judged days; episodes injected into sensor {target}"
        )
        lines = []
        for (rule, limits), share, confirm in itertools.product(
            limit_tables(own, columns).items(), SHARES, CONFIRM_DAYS
        ):
            line: dict[str, object] = {
                "column limit": rule,
                "share >": share,
                "days": confirm,
                "false alarms / 30 d": 30 * alarms(clean, limits, share, confirm).mean(),
            }
            for kind, scores in episodes.items():
                fired = alarms(scores, limits, share, confirm)
                line[f"caught: {kind}"] = float(
                    np.mean(
                        [
                            fired[scores["day"].isin([s, s + pd.Timedelta(days=1)])].any()
                            for s in starts
                        ]
                    )
                )
            lines.append(line)
        print(pd.DataFrame(lines).to_markdown(index=False, floatfmt=".2f"))
        print("\nclean judged days, quantiles of each column's distance:")
        print(clean[columns].quantile([0.5, 0.9, 0.99]).to_markdown(floatfmt=".2f"))


def check_against_evidently(
    view: pd.DataFrame, days: pd.Series, reference_days: int, scores: pd.DataFrame
) -> None:
    """The SciPy distances above are Evidently's: the first judged day with every column
    judged recomputed by `drift_summary`."""
    columns = [c for c in scores.columns if c not in ("origin", "day")]
    judged = scores[columns].notna().sum(axis=1)
    first = scores[judged == judged.max()].iloc[0]
    origin, day = first["origin"], first["day"]
    window = (days < origin) & (days >= origin - pd.Timedelta(days=reference_days))
    reference = drift_reference(view[window], days[window])
    tested = [c for c in columns if pd.notna(first[c])]
    summary = drift_summary(
        reference.rows,
        view[days == day],
        tested,
        DriftThresholds(method="wasserstein", column_threshold=0.6, min_rows=1),
    )
    for column, verdict in summary.scores.items():
        assert abs(verdict["score"] - first[column]) < 1e-6, (column, verdict, first[column])


if __name__ == "__main__":
    main()
