"""The daily loop replayed on real days, through Dagster: does it retrain only when it helps?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replay_loop.py [--set poland]
        [--start 2018-01-01] [--days 90] [--history-days 365]
        [--inject none|level_shift|stuck|variance] [--inject-day 2018-02-01]

A champion is trained on the `--history-days` before `--start` (the real `training_set` →
`forecast_model` → `champion_model`, in-process, on a DuckDB file and an MLflow store of its
own). Then each day's real readings arrive and `predictions`, `forecast_accuracy` and
`drift_report` are materialized, twice over: once with the champion frozen, once live (the
real `retrain_on_drift` sensor ticks after each day and the training it asks for runs,
cooldown 0). From `--inject-day` the readings can be changed: every pm25 sensor reads x1.5
(`level_shift`), its noise around a 24 h mean x3 (`variance`), or one sensor is stuck at its
last value (`stuck`).

Prints per day and per pass: drift and accuracy verdicts, retrains, the champion, stuck
hours quarantined; then the served RMSE per horizon pooled over the days, live against
frozen and against persistence and the best baseline on the same rows (from
`monitoring.forecast_accuracy`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import instance_for_test

# The day partitions must reach back to the real sets (read when aq_assets is imported).
os.environ.setdefault("AQ_START_DATE", "2016-01-01")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from forecast_quality import MIRROR, SHARED_SETS, datasets_of, readings_of

from aq_assets.defs.ingest.sources.base import (
    READING_COLUMNS,
    DayReadings,
    ReadingsSource,
    Sensor,
    typed_frame,
)
from aq_assets.ml.cleaning import clean_readings, stuck_hours
from aq_assets.warehouse import DuckDBWarehouse
from aq_assets_tests.drift_scenario import DayOutcome, Scenario

_LOADED: dict[str, tuple[pd.DataFrame, dict, pd.DataFrame]] = {}


class ReplaySource(ReadingsSource):
    """The readings of a real set (Parquet files the benchmark writes), served a sensor-day
    at a time. Loaded once per process: Dagster re-creates resources from their config."""

    readings_path: str
    catalog_path: str

    def _loaded(self) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
        if self.readings_path not in _LOADED:
            readings = pd.read_parquet(self.readings_path)
            keys = readings.groupby([readings["sensor_id"], readings["datetime_utc"].dt.date])
            _LOADED[self.readings_path] = (
                readings,
                keys.indices,
                pd.read_parquet(self.catalog_path),
            )
        return _LOADED[self.readings_path]

    @property
    def name(self) -> str:
        return "replay"

    def list_sensors(self) -> pd.DataFrame:
        return self._loaded()[2]

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        readings, by_key, _ = self._loaded()
        rows = by_key.get((sensor.sensor_id, day))
        frame = readings.iloc[rows] if rows is not None else readings.iloc[:0]
        return DayReadings(typed_frame(frame[list(READING_COLUMNS)], READING_COLUMNS), [])


def injected(readings: pd.DataFrame, kind: str, start: dt.date) -> pd.DataFrame:
    """The readings with `kind` applied to the target from `start` on."""
    if kind == "none":
        return readings
    on = (readings["datetime_utc"] >= pd.Timestamp(start)) & (readings["parameter"] == "pm25")
    values = readings["value"]
    if kind == "level_shift":
        values = values.where(~on, values * 1.5)
    elif kind == "variance":
        daily = (
            values[on]
            .groupby([readings["sensor_id"], readings["datetime_utc"].dt.floor("D")])
            .transform("mean")
        )
        values = values.where(~on, (daily + 3 * (values - daily)).clip(lower=0))
    elif kind == "stuck":
        sensor = int(readings.loc[readings["parameter"] == "pm25", "sensor_id"].min())
        mine = on & (readings["sensor_id"] == sensor)
        before = readings.loc[(readings["sensor_id"] == sensor) & ~on, "value"].dropna()
        values = values.where(~mine, float(before.iloc[-1]))
    else:
        raise SystemExit(f"--inject {kind!r}: expected none, level_shift, variance or stuck")
    return readings.assign(value=values)


def replay(
    source: ReplaySource, start: dt.date, days: int, history_days: int, live: bool
) -> tuple[list[DayOutcome], pd.DataFrame, int, list[int]]:
    """One pass: the outcomes, forecast_accuracy's rows, retrains, stuck hours per day."""
    with tempfile.TemporaryDirectory() as tmp, instance_for_test() as instance:
        scenario = Scenario(Path(tmp), "", instance, max_rounds=3000, source=source)
        scenario.start(start, history_days=history_days)
        outcomes, quarantined = [], []
        for k in range(days):
            day = start + dt.timedelta(days=k)
            outcome = scenario.day(day, retrain=live)
            outcomes.append(outcome)
            quarantined.append(stuck_hours_on(source, day))
            print(
                f"  {'live' if live else 'frozen'} {day} drift {'FAIL' if not outcome.check_passed else 'pass'}"
                f" accuracy {'FAIL' if not outcome.accuracy_passed else 'pass'}"
                f" retrain {'yes' if outcome.retrain_requested else 'no'}"
                f" champion v{outcome.champion_version} stuck h {quarantined[-1]}"
                f" [{outcome.drifted_features}]",
                flush=True,
            )
        accuracy = DuckDBWarehouse(aq_home=tmp).query("SELECT * FROM monitoring.forecast_accuracy")
        return outcomes, accuracy, scenario.retrains, quarantined


def stuck_hours_on(source: ReplaySource, day: dt.date) -> int:
    """Hours of the target on `day` that the quarantine leaves out."""
    frame = source._loaded()[0]
    window = frame[
        (frame["datetime_utc"] >= pd.Timestamp(day) - pd.Timedelta(hours=12))
        & (frame["datetime_utc"] < pd.Timestamp(day) + pd.Timedelta(days=1))
        & (frame["parameter"] == "pm25")
    ]
    hourly, _ = clean_readings(window)
    stuck = stuck_hours(hourly) & (hourly["datetime_utc"] >= pd.Timestamp(day))
    return int(stuck.sum())


def pooled(accuracy: pd.DataFrame) -> pd.DataFrame:
    """RMSE per (horizon, forecaster) pooled over the days."""
    frame = accuracy.assign(sse=accuracy["rmse"] ** 2 * accuracy["rows"])
    sums = frame.groupby(["horizon", "forecaster"])[["sse", "rows"]].sum()
    return np.sqrt(sums["sse"] / sums["rows"]).unstack("forecaster")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--set",
        default="poland",
        help=f"one of {', '.join(SHARED_SETS)}, or NAME=ID+ID for other locations of --mirror",
    )
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="an OpenAQ archive mirror")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2018, 1, 1))
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--inject", default="none")
    parser.add_argument("--inject-day", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--cache", type=Path, default=Path(".aq/benchmark-readings"))
    args = parser.parse_args()
    inject_day = args.inject_day or args.start + dt.timedelta(days=30)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.set} from {args.start} for {args.days} days, "
        f"champion trained on {args.history_days} days; inject {args.inject} from {inject_day}"
    )
    datasets = datasets_of(args.set, args.mirror)
    if len(datasets) != 1:
        raise SystemExit(f"--set: one set at a time, not {args.set!r}.")
    (dataset,) = datasets
    readings, catalog = readings_of(dataset, args.cache)
    replayed = args.cache / f"replay-{dataset.cache_key}-{args.inject}-{inject_day}"
    injected(readings, args.inject, inject_day).to_parquet(f"{replayed}.parquet")
    catalog.to_parquet(f"{replayed}_catalog.parquet")
    source = ReplaySource(
        parameter="pm25",
        readings_path=f"{replayed}.parquet",
        catalog_path=f"{replayed}_catalog.parquet",
    )

    results = {}
    for live in (False, True):
        started = time.perf_counter()
        outcomes, accuracy, retrains, quarantined = replay(
            source, args.start, args.days, args.history_days, live
        )
        name = "live" if live else "frozen"
        results[name] = pooled(accuracy)
        drift_alarms = sum(not o.check_passed for o in outcomes)
        accuracy_alarms = sum(not o.accuracy_passed for o in outcomes)
        promoted = len({o.champion_version for o in outcomes}) - 1
        print(
            f"{name}: {drift_alarms} drift alarms, {accuracy_alarms} accuracy alarms, "
            f"{retrains} retrains, champion changed {promoted} time(s), "
            f"{sum(1 for q in quarantined if q)} days with quarantined hours "
            f"({sum(quarantined)} h), {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    frozen, live = results["frozen"], results["live"]
    baselines = [c for c in frozen.columns if c != "champion"]
    table = pd.DataFrame(
        {
            "served (live)": live["champion"],
            "frozen champion": frozen["champion"],
            "persistence": frozen["persistence"],
            "best baseline": frozen[baselines].min(axis=1),
        }
    )
    table["live vs frozen"] = table["served (live)"] / table["frozen champion"] - 1
    print("\nRMSE pooled over the replayed days, µg/m³:")
    print(table.reset_index().to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
