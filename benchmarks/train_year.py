"""Training a year, as `training_set` and `forecast_model` do it, for the code of one checkout,
or of two compared in one run.

    .venv/bin/python benchmarks/train_year.py [--repo DIR] [--days 365] [--cache FILE]
    .venv/bin/python benchmarks/train_year.py --compare OLD_DIR [--repo NEW_DIR] [--rounds 3]

The code under test is that of `--repo` (default: the checkout holding this script): DIR goes
first on sys.path before `aq_assets` is imported (the venv's editable install of aq is taken
off the import path), and every module is checked to come from it. The stages live in
`aq_assets/defs/<stage>` since the `dg` layout and in `aq_assets/<stage>` before it; both are
found (`aq_assets.ml` did not move). Since "Thin assets" (5cd2354) forecast_model decides
through `model/selection.py` (`select`, `recent_backtest`), the warehouse reads are Warehouse
methods and the spec comes from `ForecastTarget`; a checkout without them runs the same
functions as its forecast_model body called them.

Input: the 20 default simulated sensors (5 locations × pm25, pm10, no2, o3) ×
`--days` UTC days from 2025-01-01 (`SimulatedSource.fetch_day`), generated once, untimed, and
kept as parquet (`--cache`, default in the temp directory) so every run of every version reads
the same readings. They are loaded, untimed, by the checkout's own `readings_window` from its
Warehouse, over a DuckDB file holding them as `ingest.raw_readings`.

Timed, in one process, with the assets' default configs (`TrainingSetConfig`,
`ForecastModelConfig`, default parameter and horizons), the functions the assets call, with no
champion and without MLflow:

- clean: `clean_readings`
- without_stuck: `without_stuck`
- features: `build_features` for the target sensors, then the last `window_days` kept
- judge: `judge_candidate` (a candidate fitted without the held-out days, scored on them
  beside the baselines) and the gate's `decide`
- fit: the registered forecaster, trained on every day (`Judged.on_every_day`,
  `fit_forecaster` before 2026-12-06; the baseline forecaster if the gate refused the
  candidate). Where `select` does judge and fit in one call, its calls of
  them are timed and judge is the rest
- backtest: `recent_backtest` (`_backtest` before): the held-out fortnight (since 2026-12-07)
  and `backtest_origins` fortnights before it when the gate passed
- drift_reference: `drift_view` and `drift_reference` with the candidate's held-out error

Each process prints seconds per step, their total and peak RSS (`ru_maxrss`, which includes the
imports, dagster's among them, and loading the input), then one `RESULT {json}` line.

`--compare OLD_DIR` runs that measurement in subprocesses: one warm-up per version, not counted
(the compiled loops compile on the first run and load from numba's cache after), then
`--rounds` rounds alternating the order (old, new, then new, old, ...) so drift in machine load
hits both alike; per-step medians of each version and new/old are printed. The warm-ups save
their training sets, which are compared column by column; rows, fingerprints and held-out RMSE
of the two versions are printed beside the times, and each checkout's commit and code digest,
with a warning if the code changed on disk during the comparison.

OMP_NUM_THREADS=1 is set before anything imports xgboost, numba or numpy (XGBoost's own
`nthread` is 1 in DEFAULT_PARAMS): two shared cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

# Before numpy, numba or xgboost load (all are imported below, inside functions).
os.environ["OMP_NUM_THREADS"] = "1"

FIRST_DAY = dt.date(2025, 1, 1)
STEPS = (
    "clean",
    "without_stuck",
    "features",
    "judge",
    "fit",
    "backtest",
    "drift_reference",
)
RESULT_PREFIX = "RESULT "
KEY_COLUMNS = ("sensor_id", "location_id", "datetime_utc")


# ---- the code under test -------------------------------------------------------------------


def _module(*names: str) -> ModuleType | None:
    """The first of `names` that imports; None if none exists in the checkout. Only a module
    of the checkout missing counts as absent: a missing dependency still raises."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
    return None


def _stage(name: str, required: bool = True) -> Any:
    """`aq_assets.defs.<name>`, or `aq_assets.<name>` in a checkout from before `defs/`."""
    module = _module(f"aq_assets.defs.{name}", f"aq_assets.{name}")
    if module is None and required:
        raise ModuleNotFoundError(f"neither aq_assets.defs.{name} nor aq_assets.{name}")
    return module


def _stopwatch(function: Any, seconds: list[float]) -> Any:
    """`function`, adding the seconds of each call to `seconds`."""

    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    return call


class Code:
    """The modules of one checkout that `training_set` and `forecast_model` use, and the few
    calls whose home moved between versions."""

    def __init__(self, repo: Path) -> None:
        sys.path.insert(0, str(repo))
        # The venv's editable install of aq finds what `repo` lacks (aq_assets.defs in an
        # older checkout) in the main checkout: without it, a missing module is missing.
        sys.meta_path[:] = [
            finder
            for finder in sys.meta_path
            if not getattr(finder, "__module__", "").startswith("__editable__")
        ]
        self.simulated = _stage("ingest.sources.simulated")
        self.base = _stage("ingest.sources.base")
        self.catalog = _stage("ingest.catalog")
        self.training = _stage("training.assets")
        self.model_assets = _stage("model.assets")
        self.gate = _stage("model.gate")
        # Since "Thin assets" (5cd2354): forecast_model decides through model/selection.py,
        # the fingerprint is in training/lineage.py, the spec comes from aq_assets.target.
        self.selection = _stage("model.selection", required=False)
        self.lineage = _stage("training.lineage", required=False)
        self.target = _module("aq_assets.target")
        self.warehouse = importlib.import_module("aq_assets.warehouse")
        self.cleaning = importlib.import_module("aq_assets.ml.cleaning")
        self.features = importlib.import_module("aq_assets.ml.features")
        self.evaluation = importlib.import_module("aq_assets.ml.evaluation")
        self.model = importlib.import_module("aq_assets.ml.model")
        self.drift = importlib.import_module("aq_assets.ml.drift")
        root = repo.resolve()
        strays = [
            name
            for name, module in sys.modules.items()
            if name.split(".")[0] == "aq_assets"
            and getattr(module, "__file__", None)
            and not Path(module.__file__).resolve().is_relative_to(root)
        ]
        if strays:
            raise RuntimeError(f"modules not from {root}: {sorted(strays)}")

    @property
    def layout(self) -> str:
        return f"{self.training.__name__}" + (
            " + model.selection" if self.selection is not None else ""
        )

    def spec(self) -> Any:
        """The feature spec `training_set` starts from (default parameter and horizons)."""
        if self.target is not None:
            return self.target.ForecastTarget().spec()
        horizons = tuple(sorted(self.training.TrainingSetConfig().horizons))
        parameter = self.simulated.SimulatedSource().parameter
        return self.features.FeatureSpec(parameter=parameter, horizons=horizons)

    def readings_window(self, warehouse: Any, parameter: str, hours: int, end: Any) -> Any:
        if hasattr(warehouse, "readings_window"):
            return warehouse.readings_window(parameter, hours, end)
        return self.training.readings_window(warehouse, parameter, hours, end)

    def fingerprint(self, frame: Any) -> str:
        return (self.lineage or self.training).content_fingerprint(frame)


def machine_line() -> str:
    import numba
    import numpy as np
    import pandas as pd
    import xgboost

    return (
        f"machine: {os.cpu_count()} cores ({platform.machine()}), python "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"xgboost {xgboost.__version__}, numba {numba.__version__}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )


# ---- input ---------------------------------------------------------------------------------


def default_cache(days: int) -> Path:
    return Path(tempfile.gettempdir()) / f"aq_train_year_{days}d.parquet"


def prepare(code: Code, days: int, path: Path) -> None:
    """The raw readings of every default simulated sensor over `days` UTC days from
    FIRST_DAY, written to `path` (atomically: a half-written cache is never read)."""
    import pandas as pd

    source = code.simulated.SimulatedSource()
    pieces = []
    for row in source.list_sensors().itertuples(index=False):
        sensor = code.base.Sensor(
            sensor_id=int(row.sensor_id),
            location_id=int(row.location_id),
            parameter=str(row.parameter),
            units=str(row.units),
            timezone=str(row.timezone),
        )
        for offset in range(days):
            day = FIRST_DAY + dt.timedelta(days=offset)
            pieces.append(source.fetch_day(sensor, day).readings)
    readings = pd.concat(pieces, ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    readings.to_parquet(partial, index=False)
    partial.replace(path)


def warehouse_of(code: Code, cache: Path, directory: Path) -> Any:
    """The checkout's Warehouse over a DuckDB file in `directory` whose `ingest.raw_readings`
    holds the cached readings, typed as the warehouse types them."""
    import duckdb

    quoted = "'" + str(cache).replace("'", "''") + "'"
    with duckdb.connect(str(directory / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA ingest")
        con.execute(
            "CREATE TABLE ingest.raw_readings AS SELECT sensor_id::BIGINT AS sensor_id, "
            "location_id::BIGINT AS location_id, parameter::VARCHAR AS parameter, "
            "units::VARCHAR AS units, datetime_utc::TIMESTAMP AS datetime_utc, "
            f"value::DOUBLE AS value, source::VARCHAR AS source FROM read_parquet({quoted})"
        )
    # Checkouts before the PostgreSQL warehouse named the DuckDB one `Warehouse`.
    duckdb_warehouse = getattr(code.warehouse, "DuckDBWarehouse", None) or code.warehouse.Warehouse
    return duckdb_warehouse(aq_home=str(directory), database="warehouse.duckdb")


# ---- one measurement -----------------------------------------------------------------------


@contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(code: Code, cache: Path, days: int, save_frame: Path | None) -> dict[str, Any]:
    """Seconds per step of training on the cached readings, as the assets do it; what was
    trained (rows, fingerprint, held-out RMSE, gate) to compare versions by."""
    import logging

    import pandas as pd

    training_config = code.training.TrainingSetConfig()
    config = code.model_assets.ForecastModelConfig()
    catalog = code.simulated.SimulatedSource().list_sensors()
    spec = code.spec()
    parameter = spec.parameter
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        readings = code.readings_window(
            warehouse_of(code, cache, Path(tmp)),
            parameter,
            training_config.window_days * 24 + spec.history_hours,
            pd.Timestamp(FIRST_DAY + dt.timedelta(days=days)),  # the calendar's end
        )
    load_s = time.perf_counter() - start
    rss_before = peak_rss_mb()

    # training_set
    seconds: dict[str, float] = {}
    with timed(seconds, "clean"):
        hourly, report = code.cleaning.clean_readings(readings)
    with timed(seconds, "without_stuck"):
        hourly, quarantined = code.cleaning.without_stuck(hourly, parameter)
    with timed(seconds, "features"):
        target_sensors = sorted(hourly.loc[hourly["parameter"] == parameter, "sensor_id"].unique())
        spec = spec.with_sensors(target_sensors)
        timezones = code.catalog.timezones_of(catalog)
        frame = code.features.build_features(hourly, spec, timezones)
        window_start = frame["datetime_utc"].max() - pd.Timedelta(days=training_config.window_days)
        frame = frame[frame["datetime_utc"] > window_start].reset_index(drop=True)

    # forecast_model, no champion, no MLflow
    backtested = None
    if code.selection is not None:
        # `select` judges, decides and fits in one call: its fits are timed where it calls them.
        fits: list[float] = []
        for name in ("fit_forecaster", "baseline_forecaster"):  # the first until 2026-12-06
            if hasattr(code.selection, name):
                setattr(code.selection, name, _stopwatch(getattr(code.selection, name), fits))
        judged_class = code.evaluation.Judged
        if hasattr(judged_class, "on_every_day"):  # its successor, a method
            judged_class.on_every_day = _stopwatch(judged_class.on_every_day, fits)
        start = time.perf_counter()
        spec = code.features.FeatureSpec.of_training_set(frame, parameter)
        settings = code.selection.Settings(
            config.holdout_days,
            config.validation_days,
            config.baseline_tolerance,
            config.champion_tolerance,
            config.max_rounds,
        )
        chosen = code.selection.select(
            frame, spec, None, None, settings, logging.getLogger("train_year")
        )
        seconds["fit"] = sum(fits)
        seconds["judge"] = time.perf_counter() - start - seconds["fit"]
        judged, decision, registered = chosen.judged, chosen.decision, chosen.registered
        with timed(seconds, "backtest"):
            if "judged" in inspect.signature(code.selection.recent_backtest).parameters:
                backtested = code.selection.recent_backtest(  # since 2026-12-07
                    judged, registered, frame, config.backtest_origins if decision.passed else 0
                )
            elif config.backtest_origins and decision.passed:
                backtested = code.selection.recent_backtest(
                    registered, frame, judged.holdout, config.backtest_origins
                )
        with timed(seconds, "drift_reference"):
            chosen.drift_reference(frame, spec)
    else:  # forecast_model's body before model/selection.py, less its MLflow calls
        with timed(seconds, "judge"):
            spec = code.features.FeatureSpec.of_training_set(frame, parameter)
            judged = code.evaluation.judge_candidate(
                frame, spec, config.holdout_days, config.validation_days, config.max_rounds
            )
            decision = code.gate.decide(
                judged.scores, config.baseline_tolerance, config.champion_tolerance, None
            )
        with timed(seconds, "fit"):
            if decision.passed:
                registered = code.model.fit_forecaster(
                    frame, spec, judged.validation_days, max_rounds=config.max_rounds
                )
            else:  # no champion: the best baseline per horizon
                among = code.model.BASELINE_FORECASTS
                best = code.gate.best_baselines(judged.scores, among=among)["name"]
                registered = code.model.baseline_forecaster(frame, spec, best.to_dict())
        with timed(seconds, "backtest"):
            if config.backtest_origins and decision.passed:
                backtested = code.model_assets._backtest(
                    registered, frame, judged.holdout, config.backtest_origins
                )
        with timed(seconds, "drift_reference"):
            learnt = frame  # a passed candidate refit on every day, or a baseline
            judged_forecaster = registered if registered.is_baseline else judged.candidate
            # code before 2026-12-07 night took the covariates, not the spec
            takes_spec = "spec" in inspect.signature(code.features.drift_view).parameters
            view = code.features.drift_view(learnt, spec if takes_spec else spec.covariates)
            code.drift.drift_reference(
                view,
                learnt.loc[view.index, "datetime_utc"].dt.floor("D"),
                code.drift.relative_error(
                    judged_forecaster.predict(judged.holdout)["h1"], judged.holdout["target_h1"]
                ),
            )

    if save_frame is not None:
        frame.to_parquet(save_frame, index=False)
    model_scores = judged.scores[judged.scores["forecaster"] == "model"].set_index("horizon")
    return {
        "layout": code.layout,
        "seconds": {step: seconds[step] for step in STEPS},
        "total": sum(seconds.values()),
        "load_seconds": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_steps_mb": rss_before,
        "readings": len(readings),
        "hourly": len(hourly),
        "quarantined_stuck_hours": int(quarantined),
        "cleaning": report.as_dict(),
        "rows": len(frame),
        "columns": len(frame.columns),
        "first_hour": str(frame["datetime_utc"].min()),
        "last_hour": str(frame["datetime_utc"].max()),
        "fingerprint": code.fingerprint(frame),
        "holdout_rows": len(judged.holdout),
        "holdout_rmse": {str(h): float(r) for h, r in model_scores["rmse"].items()},
        "gate_passed": bool(decision.passed),
        "gate_reasons": list(decision.reasons),
        "candidate_rounds": {str(h): int(n) for h, n in judged.candidate.best_iterations.items()},
        "registered_rounds": {str(h): int(n) for h, n in registered.best_iterations.items()},
        "backtest_rows": 0 if backtested is None else len(backtested),
    }


def print_measurement(result: dict[str, Any]) -> None:
    for step in STEPS:
        print(f"{step:>16}: {result['seconds'][step]:8.2f} s")
    print(
        f"{'total':>16}: {result['total']:8.2f} s   (loading the input, untimed: "
        f"{result['load_seconds']:.2f} s)"
    )
    print(
        f"peak RSS {result['peak_rss_mb']:.0f} MB (before the steps: "
        f"{result['rss_before_steps_mb']:.0f} MB); {result['rows']} training rows, "
        f"{result['holdout_rows']} held out, fingerprint {result['fingerprint']}, gate "
        f"{'passed' if result['gate_passed'] else 'refused'}"
    )
    rmse = ", ".join(f"h{h} {v:.3f}" for h, v in result["holdout_rmse"].items())
    print(f"held-out RMSE of the candidate: {rmse}")


def run_one(args: argparse.Namespace) -> None:
    repo = Path(args.repo).resolve()
    code = Code(repo)
    cache = Path(args.cache) if args.cache else default_cache(args.days)
    if not cache.exists():
        start = time.perf_counter()
        prepare(code, args.days, cache)
        print(f"input: {cache} written in {time.perf_counter() - start:.1f} s (untimed)")
    if args.prepare_only:
        return
    print(machine_line())
    print(f"code: {repo} ({code.layout})")
    save = Path(args.save_frame) if args.save_frame else None
    result = measure(code, cache, args.days, save)
    print_measurement(result)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---- old against new -----------------------------------------------------------------------


def child(script_args: list[str]) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its RESULT line."""
    command = [sys.executable, str(Path(__file__).resolve()), *script_args]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.stdout.write(done.stdout)
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else {}


def source_state(repo: Path) -> str:
    """The checkout's commit, its uncommitted changes under aq_assets/, and a digest of the
    code as it is on disk, which says whether it changed during a comparison."""
    import hashlib

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *arguments], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    digest = hashlib.sha256()
    for path in sorted((repo / "aq_assets").rglob("*.py")):
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    changed = len(git("status", "--porcelain", "--", "aq_assets").splitlines())
    return (
        f"commit {git('rev-parse', '--short', 'HEAD') or '?'}, {changed} uncommitted changes "
        f"under aq_assets/, code sha256 {digest.hexdigest()[:12]}"
    )


def frame_differences(old_path: Path, new_path: Path) -> list[str]:
    """How the two versions' training sets differ; empty when identical (NaN in the same
    places, every value equal)."""
    import numpy as np
    import pandas as pd

    old, new = pd.read_parquet(old_path), pd.read_parquet(new_path)
    if list(old.columns) != list(new.columns):
        only_old = sorted(set(old.columns) - set(new.columns))
        only_new = sorted(set(new.columns) - set(old.columns))
        return [f"columns differ: only old {only_old}, only new {only_new}, or their order"]
    if len(old) != len(new):
        return [f"rows differ: old {len(old)}, new {len(new)}"]
    problems = []
    for column in old.columns:
        a, b = old[column], new[column]
        if a.dtype != b.dtype:
            problems.append(f"{column}: dtype old {a.dtype}, new {b.dtype}")
        if column in KEY_COLUMNS or not pd.api.types.is_numeric_dtype(a):
            if not a.astype(str).equals(b.astype(str)):
                problems.append(f"{column}: values differ")
            continue
        x = a.to_numpy(dtype=np.float64, na_value=np.nan)
        y = b.to_numpy(dtype=np.float64, na_value=np.nan)
        nan_mismatch = int((np.isnan(x) != np.isnan(y)).sum())
        both = ~np.isnan(x) & ~np.isnan(y)
        differ = int((x[both] != y[both]).sum())
        if nan_mismatch or differ:
            worst = float(np.max(np.abs(x[both] - y[both]))) if both.any() else 0.0
            problems.append(
                f"{column}: {differ} values differ (max |diff| {worst:.3g}), "
                f"{nan_mismatch} NaN mismatches"
            )
    return problems


def compare(args: argparse.Namespace) -> None:
    versions = {"old": Path(args.compare).resolve(), "new": Path(args.repo).resolve()}
    cache = Path(args.cache) if args.cache else default_cache(args.days)
    common = ["--days", str(args.days), "--cache", str(cache)]
    if not cache.exists():
        child(["--repo", str(versions["new"]), *common, "--prepare-only"])
    print(machine_line())
    print(f"input: {cache} ({args.days} days)")
    states = {name: source_state(repo) for name, repo in versions.items()}
    for name, repo in versions.items():
        print(f"{name}: {repo}, {states[name]}")

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    with tempfile.TemporaryDirectory() as tmp:
        frames = {name: Path(tmp) / f"frame_{name}.parquet" for name in versions}
        for name, repo in versions.items():
            warm = child(["--repo", str(repo), *common, "--save-frame", str(frames[name])])
            print(f"warm-up {name}: {warm['total']:.1f} s (not counted)", flush=True)
        differences = frame_differences(frames["old"], frames["new"])
    for round_ in range(args.rounds):
        order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
        for name in order:
            result = child(["--repo", str(versions[name]), *common])
            results[name].append(result)
            print(
                f"round {round_ + 1} {name}: "
                + ", ".join(f"{s} {result['seconds'][s]:.2f}" for s in STEPS)
                + f"; total {result['total']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    def median(name: str, pick: Any) -> float:
        return statistics.median(pick(r) for r in results[name])

    print(f"\nmedians of {args.rounds} rounds (seconds), {args.days} days × 20 sensors")
    print(f"{'step':<16} {'old':>9} {'new':>9} {'new/old':>8}")
    for step in (*STEPS, "total"):

        def pick(r: dict[str, Any], step: str = step) -> float:
            return r["total"] if step == "total" else r["seconds"][step]

        old, new = median("old", pick), median("new", pick)
        ratio = f"{new / old:8.2f}" if old > 0 else f"{'-':>8}"
        print(f"{step:<16} {old:9.2f} {new:9.2f} {ratio}")
    old_rss = median("old", lambda r: r["peak_rss_mb"])
    new_rss = median("new", lambda r: r["peak_rss_mb"])
    print(f"{'peak RSS (MB)':<16} {old_rss:9.0f} {new_rss:9.0f} {new_rss / old_rss:8.2f}")

    print("\nwhat was trained (first counted round of each):")
    for name in versions:
        r = results[name][0] if results[name] else {}
        if not r:
            continue
        rmse = ", ".join(f"h{h} {v:.4f}" for h, v in r["holdout_rmse"].items())
        print(
            f"{name}: {r['rows']} rows × {r['columns']} columns ({r['first_hour']} .. "
            f"{r['last_hour']}), fingerprint {r['fingerprint']}, {r['holdout_rows']} held out, "
            f"gate {'passed' if r['gate_passed'] else 'refused: ' + '; '.join(r['gate_reasons'])}"
        )
        print(f"{'':>5}held-out RMSE {rmse}")
        print(
            f"{'':>5}rounds: candidate {r['candidate_rounds']}, registered {r['registered_rounds']}"
        )
    print(
        "training sets: identical"
        if not differences
        else "training sets differ:\n  " + "\n  ".join(differences)
    )
    for name, repo in versions.items():
        if source_state(repo) != states[name]:
            print(f"WARNING: the {name} code changed during the comparison: {source_state(repo)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo",
        default=str(Path(__file__).resolve().parents[1]),
        help="the checkout whose code is measured (the new one with --compare)",
    )
    parser.add_argument("--compare", metavar="OLD_REPO", help="the checkout to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--cache", help="parquet of the raw readings (written if missing)")
    parser.add_argument("--save-frame", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        compare(args)
    else:
        run_one(args)


if __name__ == "__main__":
    main()
