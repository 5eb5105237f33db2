"""Forecast quality on every real set in ../shared/data: rolling-origin backtests.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/forecast_quality.py [--sets poland,toronto]
        [--parameter pm25] [--window-days 365] [--cache DIR]
    # any locations of any archive mirror: real data the forecaster was never developed on
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/forecast_quality.py --mirror DIR \
        --sets berlin=2162+2163+2164

For each dataset (Mexico City, Toronto, the low-cost sensor 3276359, Poland), the readings
are read through the archive source from the local mirror, cleaned and featurized by the
code `training_set` runs, and then, at an origin every one to four weeks (by the set's span
alone, `Schedule`), a forecaster is trained as
`forecast_model` trains it (a candidate judged on the last held-out days, then its settings
trained on every day) on the `--window-days` before the origin and scored on the weeks after
it, beside persistence, same-hour-yesterday and hour-of-day climatology on the same rows. The
gate is replayed on the same candidate: would a first model trained there have been promoted?

Prints one table per dataset (pooled RMSE per horizon, skill per season) and the bars of the
forecaster issue. `--parameter` forecasts another pollutant of the same sets (Mexico City's
and Toronto's reference monitors measure no2, o3 and more): a check that nothing was tuned to
pm25.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aq_assets.defs.ingest.catalog import sensors_by_id, timezones_of
from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.archive import ArchiveSource
from aq_assets.defs.ingest.sources.base import SourceError
from aq_assets.defs.model.assets import ForecastModelConfig
from aq_assets.defs.model.gate import decide
from aq_assets.ml.air_quality import DEFAULT_THRESHOLDS
from aq_assets.ml.backtest import (
    Fit,
    backtest,
    pooled_distribution,
    pooled_rmse,
    rolling_origins,
    summary,
)
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.evaluation import judge_candidate
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.intervals import INTERVALS
from aq_assets.ml.model import Forecaster

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "openaq-archive"


SHARED_SETS = {
    "mexico_city": "8000,10534,10658,10699,10722,10748,10762,10802,10804,10860",
    "toronto": "7570,1274949,1274950,1275803,1612333,3442588,3911519",
    "low_cost_3276359": "3276359",
    "poland": "960422,960424,960492,960572,960693,960708,960764,961032",
}
GATE = ForecastModelConfig()  # forecast_model's defaults: tolerances
BASELINE_TOLERANCE = 0.02  # the bar for "never worse than the best baseline" per origin


@dataclass(frozen=True)
class Dataset:
    """Locations of an archive mirror, judged together."""

    name: str
    locations: str
    mirror: Path = MIRROR

    @property
    def cache_key(self) -> str:
        """The set's name and a digest of where its readings come from: a name given again
        with other locations or another mirror is read afresh."""
        source = f"{self.mirror.resolve()}|{self.locations}".encode()
        return f"{self.name}-{hashlib.sha1(source).hexdigest()[:8]}"


def datasets_of(sets: str, mirror: Path = MIRROR) -> list[Dataset]:
    """`--sets`: comma-separated names of the shared sets, or `name=id+id+...` for any
    locations of `mirror` (`berlin=2162+2163`)."""
    datasets = []
    for item in sets.split(","):
        name, _, ids = item.partition("=")
        if ids:
            datasets.append(Dataset(name, ids.replace("+", ","), mirror))
        elif name in SHARED_SETS:
            datasets.append(Dataset(name, SHARED_SETS[name], mirror))
        else:
            raise SystemExit(
                f"--sets: {name!r} is not one of {', '.join(SHARED_SETS)}; name other "
                f"locations as NAME=ID+ID (for example berlin=2162+2163)."
            )
    return datasets


@dataclass(frozen=True)
class Schedule:
    """Where a set's origins fall: the first after `min_train_days` of history, then one every
    `step_days`, each scored on the `step_days` after it."""

    min_train_days: int
    step_days: int

    @classmethod
    def of(cls, times: pd.Series) -> Schedule:
        """By the set's span alone (nothing tuned per set): weekly origins for a month of
        readings, fortnightly for a season, every four weeks for a year or more; the first
        after two steps of history (at most six weeks)."""
        span = (times.max() - times.min()).days
        step = 7 if span < 60 else 14 if span < 180 else 28
        return cls(min(2 * step, 42), step)

    def origins(self, times: pd.Series) -> list[pd.Timestamp]:
        return rolling_origins(times, self.min_train_days, self.step_days, self.step_days)


def readings_of(
    dataset: Dataset, cache: Path, parameter: str = "pm25"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every reading of the dataset's locations that measure `parameter`, and its catalog
    (cached as Parquet)."""
    readings_path = cache / f"{dataset.cache_key}-{parameter}.parquet"
    catalog_path = cache / f"{dataset.cache_key}-{parameter}_catalog.parquet"
    if readings_path.exists() and catalog_path.exists():
        return pd.read_parquet(readings_path), pd.read_parquet(catalog_path)
    source = ArchiveSource(
        root=str(dataset.mirror), locations=dataset.locations, parameter=parameter
    )
    try:
        catalog = source.list_sensors()
    except SourceError as error:
        raise SystemExit(f"{dataset.name}: {error}") from None
    if catalog.empty:
        raise SystemExit(
            f"{dataset.name}: no {parameter} sensor at locations {dataset.locations} in "
            f"{dataset.mirror} (check --mirror, the location ids and --parameter)."
        )
    sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
    days = pd.date_range(
        catalog["first_seen_utc"].min().date(), catalog["last_seen_utc"].max().date()
    ).date
    readings = collect_readings(
        source, [(s, d) for s in sensors.values() for d in days], pd.Timestamp.now()
    ).readings
    cache.mkdir(parents=True, exist_ok=True)
    readings.to_parquet(readings_path)
    catalog.to_parquet(catalog_path)
    return readings, catalog


def fit_and_gate(promoted: list[bool], validation_days: int) -> Fit:
    """What `forecast_model` registers at an origin with no champion, and whether it would
    have promoted it (appended to `promoted`): a candidate judged on the last held-out days
    (`judge_candidate` + `decide`), then its settings trained on every day. The backtest
    scores the trained version whether or not the gate passed it."""

    def fit(history: pd.DataFrame, spec: FeatureSpec) -> Forecaster:
        try:
            judged = judge_candidate(history, spec, validation_days=validation_days)
        except ValueError:  # too little to learn from: nothing promoted, no model scored
            promoted.append(False)
            raise
        decision = decide(
            judged.scores,
            GATE.baseline_tolerance,
            GATE.champion_tolerance,
            intervals=judged.intervals,
            coverage_tolerance=GATE.coverage_tolerance,
            daily=judged.daily,
        )
        promoted.append(decision.passed)
        return judged.on_every_day(history)

    return fit


def markdown(table: pd.DataFrame) -> str:
    """`table` as markdown: errors and widths, in the parameter's units, to five significant
    digits (gases are in ppm, 0.0062; particles in µg/m³, 16.227), counts whole, the rest
    (skills, coverages) to three decimals."""

    def format_of(column: str) -> str:
        if any(word in column for word in ("RMSE", "width", "pinball")):
            return ".5g"
        if column == "horizon" or column.startswith("exceeded"):
            return "g"
        return ".3f"

    return table.to_markdown(index=False, floatfmt=tuple(format_of(str(c)) for c in table.columns))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sets",
        default=",".join(SHARED_SETS),
        help="names of the shared sets, or NAME=ID+ID for other locations of --mirror",
    )
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="an OpenAQ archive mirror")
    parser.add_argument("--parameter", default="pm25", help="the pollutant forecast")
    parser.add_argument("--window-days", type=int, default=365, help="training_set default")
    parser.add_argument("--validation-days", type=int, default=14)
    parser.add_argument("--cache", type=Path, default=Path(".aq/benchmark-readings"))
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; window {args.window_days} days, validation "
        f"{args.validation_days} days"
    )
    for dataset in datasets_of(args.sets, args.mirror):
        started = time.perf_counter()
        readings, catalog = readings_of(dataset, args.cache, args.parameter)
        hourly, _ = clean_readings(readings)
        targets = sorted(hourly.loc[hourly["parameter"] == args.parameter, "sensor_id"].unique())
        frame = build_features(
            hourly,
            FeatureSpec(parameter=args.parameter).with_sensors(targets),
            timezones_of(catalog),
        )
        spec = FeatureSpec.of_training_set(frame, args.parameter)  # as forecast_model reads it
        schedule = Schedule.of(frame["datetime_utc"])
        origins = schedule.origins(frame["datetime_utc"])
        if not origins:
            print(f"\n## {dataset.name}: too short for an origin ({schedule}); skipped")
            continue

        promoted: list[bool] = []
        sums = backtest(
            frame,
            spec,
            origins,
            fit_and_gate(promoted, args.validation_days),
            args.window_days,
            schedule.step_days,
            DEFAULT_THRESHOLDS.get(args.parameter, ()),
        )
        pooled = pooled_rmse(sums, [])
        seasons = pooled_rmse(sums, ["season"])["skill_vs_best"].unstack("season")
        headline = summary(sums, BASELINE_TOLERANCE)
        elapsed = time.perf_counter() - started

        print(
            f"\n## {dataset.name}: {len(targets)} {args.parameter} sensors, "
            f"{headline['origins']} origins "
            f"{origins[0].date()}..{origins[-1].date()} every {schedule.step_days} days, "
            f"{elapsed:.0f} s"
        )
        table = pooled[
            ["model", "persistence", "same_hour_yesterday", "climatology", "best_baseline"]
        ].rename(columns=lambda c: f"RMSE {c}".replace("_", " "))
        table["skill vs best"] = pooled["skill_vs_best"]
        table["skill vs persistence"] = pooled["skill_vs_persistence"]
        print(markdown(table.reset_index()))
        print("\nskill vs the best baseline by season (rows scored in that season):")
        print(markdown(seasons.reset_index()))
        beats = (pooled["model"] < pooled["best_baseline"]).all()
        print(
            f"\npooled RMSE below the best baseline at every horizon: {'PASS' if beats else 'FAIL'}"
            f"; 1 h skill vs persistence {pooled.loc[1, 'skill_vs_persistence']:.1%}; origins "
            f"within {BASELINE_TOLERANCE:.0%} of the best baseline at every horizon: "
            f"{headline['origins_within_tolerance']:.0%} (bar 90%)"
        )
        distribution = pooled_distribution(sums, [])
        if not distribution.empty:
            print("\nintervals and exceedance probabilities (pooled over the origins):")
            print(markdown(distribution.reset_index()))
            off = max(
                abs(distribution[f"coverage{nominal}"] - nominal / 100).max()
                for nominal in INTERVALS
            )
            print(
                f"80% and 90% coverage within 3 points of nominal at every horizon: "
                f"{'PASS' if off <= 0.03 else 'FAIL'} (worst {off:.1%} off)"
            )
        if promoted:
            print(
                f"gate promotes a first trained model at {sum(promoted)}/{len(promoted)} "
                f"origins ({sum(promoted) / len(promoted):.0%}, bar 90%)"
            )


if __name__ == "__main__":
    main()
