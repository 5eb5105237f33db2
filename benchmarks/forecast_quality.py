"""Forecast quality on real data: Mexico City pm25 (OpenAQ archive mirror), last 14 days held out.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/forecast_quality.py [--window-days 60]

Runs the same code as the `training_set` and `forecast_model` assets (clean → features →
time-ordered split → per-horizon XGBoost blended with climatology → evaluation on the same
held-out rows) and checks the bar: RMSE at 1 h at least 15% below persistence, and below the
best of persistence, same-hour-yesterday and hour-of-day climatology at every horizon.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import pandas as pd

from aq_assets.ingest.catalog import sensors_by_id, timezones_of
from aq_assets.ingest.readings import collect_readings
from aq_assets.ingest.sources.archive import ArchiveSource
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.evaluation import BASELINES, baseline_forecasts, evaluate, scores_table
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.model import TimeSplit, train_forecaster

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "openaq-archive"
MEXICO_CITY = "8000,10534,10658,10699,10722,10748,10762,10802,10804,10860"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--window-days", type=int, default=60, help="training_set window (asset default 60)"
    )
    parser.add_argument("--holdout-days", type=int, default=14)
    args = parser.parse_args()

    source = ArchiveSource(root=str(MIRROR), locations=MEXICO_CITY, parameter="pm25")
    catalog = source.list_sensors()
    sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
    last = (catalog["last_seen_utc"].max()).date()
    spec = FeatureSpec(parameter="pm25")
    first = last - dt.timedelta(days=args.window_days + spec.history_hours // 24 + 1)
    days = pd.date_range(first, last).date
    readings = collect_readings(
        source, [(s, d) for s in sensors.values() for d in days], pd.Timestamp.now()
    ).readings

    started = time.perf_counter()
    latest = readings.loc[readings["parameter"] == "pm25", "datetime_utc"].max()
    readings = readings[
        readings["datetime_utc"]
        > latest - pd.Timedelta(hours=args.window_days * 24 + spec.history_hours)
    ]
    hourly, report = clean_readings(readings)
    spec = spec.with_sensors(
        sorted(hourly.loc[hourly["parameter"] == "pm25", "sensor_id"].unique())
    )
    timezones = timezones_of(catalog)
    frame = build_features(hourly, spec, timezones)
    frame = frame[
        frame["datetime_utc"] > frame["datetime_utc"].max() - pd.Timedelta(days=args.window_days)
    ]
    train, validation, holdout = TimeSplit.last_days(
        frame["datetime_utc"], args.holdout_days, 14
    ).parts(frame, max(spec.horizons))
    forecaster = train_forecaster(train, validation, spec)
    # Baselines look back from each held-out row: computed on the whole frame, as the asset does.
    baselines = baseline_forecasts(frame, pd.concat([train, validation]), spec)
    forecasts = {
        "model": forecaster.predict(holdout),
        **{k: v.loc[holdout.index] for k, v in baselines.items()},
    }
    scores = evaluate(holdout, forecasts, spec)
    elapsed = time.perf_counter() - started

    rmse = scores.pivot(index="horizon", columns="forecaster", values="rmse")
    best_baseline = rmse[list(BASELINES)].min(axis=1)
    episodes = scores.pivot(index="horizon", columns="forecaster", values="rmse_episodes")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"data: {len(spec.sensors)} pm25 sensors, window {args.window_days} days, holdout from "
        f"{holdout['datetime_utc'].min()} to {holdout['datetime_utc'].max()}; train {len(train)} rows, "
        f"validation {len(validation)}, holdout {len(holdout)}; cleaning {report.as_dict()}"
    )
    print(
        f"clean + features + train + evaluate: {elapsed:.1f} s; climatology blend weights "
        f"{ {h: round(w, 3) for h, w in forecaster.climatology_weights.items()} }"
    )
    print(scores_table(scores))
    print("\nRMSE on episodes (top 10% of held-out targets):")
    print(episodes.round(3).to_markdown())
    skill_1h = 1 - rmse.loc[1, "model"] / rmse.loc[1, "persistence"]
    beats = rmse["model"] < best_baseline
    print(
        f"\n1 h RMSE {skill_1h:.1%} below persistence (bar 15%): {'PASS' if skill_1h >= 0.15 else 'FAIL'}"
    )
    print(
        "below the best baseline at every horizon: "
        + ", ".join(
            f"{h} h {'PASS' if ok else 'FAIL'} ({rmse.loc[h, 'model']:.3f} vs {best_baseline[h]:.3f})"
            for h, ok in beats.items()
        )
    )


if __name__ == "__main__":
    main()
