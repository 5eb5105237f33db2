"""aq at 20 to 1,000 simulated sensors: discover, backfill, train and one day of the loop.

    .venv/bin/python benchmarks/scale.py [--sensors 20 100 500 1000] [--days 10]
        [--instance sqlite postgres] [--event-batch-size 0 1000]
        [--steps discover,backfill,train,loop] [--target-only] [--before PATH] [--profile]

Every step is a whole process (`aq ...`, or `dagster asset materialize` for the loop's
forecasts), timed from outside in a fresh AQ_HOME and DAGSTER_HOME per size and configuration,
with the peak RSS of its largest process (`os.wait4`'s `ru_maxrss`, which covers the process
and every descendant it waited for) and its CPU time (user + system; on a busy machine a
single-threaded step's wall time is that plus its wait for a core). The simulated source
invents a site per location id and offers 4 sensors at each (pm25, pm10, no2, o3): N sensors
are N/4 locations, N/4 of them target (pm25) sensors. With `--target-only` (AQ_SIM_TARGET_ONLY) each site offers its pm25
sensor alone: N sensors are N sites, all target sensors, for a quarter of the ingest (the
training set then has no co-located parameters; the pm25 readings are the same).

A configuration is an instance (`sqlite`: deploy/local/dagster.yaml, as `aq` uses it locally;
`postgres`: deploy/dagster.yaml over a database of its own, created on the local PostgreSQL,
AQ_TEST_PG_HOST/PORT/USER as for the tests (`aq_assets_tests/postgres.py`), default
127.0.0.1:5432 postgres with trust auth, and dropped after) and a DAGSTER_EVENT_BATCH_SIZE (0: unset). For each size the configurations run in
turn, in alternating order from one size to the next, so that drift in machine load hits
them alike: compare them by their ratios.

Steps:
- discover: `aq discover` (sensor_catalog, registers the sensor partitions)
- backfill: `aq backfill --days D` (D days × every sensor; the calendar ends at END_DATE)
- train: `aq train` (training_set -> forecast_model -> champion_model, default window)
- loop: one day of the daily loop, as the schedule and the automation run it: the ingest of
  the newest two days for every sensor (`aq backfill --days 2` with the calendar one day
  later), then `predictions`, `forecast_accuracy`, `drift_report` of the new day and the
  `online_features` snapshot (`dagster asset materialize`); needs a champion (train first)
- train_before (with `--before PATH`): `aq train` with the code of another checkout (PATH
  first on PYTHONPATH, e.g. `git archive <commit> | tar -x -C PATH`) on a copy of the same
  warehouse with no model yet, before or after `train` by turns: the ratio train/train_before
- load: loading the code location (`import aq_assets.definitions` and building its
  repository) in the same AQ_HOME and DAGSTER_HOME, with the size's sensors registered

Prints the machine, one line per process, a table per size and configuration (wall, ms per
sensor-day for the backfill, peak RSS) and the growth exponent of each step: the slope of
log(wall) against log(sensors) between successive sizes. `--profile` also runs the last
configuration's backfill at the largest size once more under cProfile and prints where the
time went.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile  # noqa: F401  (the profiled child imports it; listed for readers)
import datetime as dt
import itertools
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aq_assets_tests.postgres import PG_ADMIN, PG_HOST, PG_PORT, scratch_database

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = ("discover", "backfill", "train", "loop", "load")
REPORTED = (*STEPS, "train_before")
LOAD_DEFINITIONS = "from aq_assets.definitions import defs; defs.get_repository_def()"
SENSORS_PER_LOCATION = 4  # pm25, pm10, no2, o3 (simulated.py, _sensor_parameters)
# The calendar: fixed, so every run reads the same simulated days whatever today is. The
# backfill ends the day before END_DATE; the loop's day is END_DATE itself.
END_DATE = dt.date(2025, 7, 1)

PROFILED_AQ = """
import cProfile, os, sys
from aq_assets.cli import main
profile = cProfile.Profile()
code = 0
try:
    profile.runcall(main, sys.argv[2:])
except SystemExit as exit_:
    code = exit_.code if isinstance(exit_.code, int) else 1
profile.dump_stats(sys.argv[1])
sys.stdout.flush()
os._exit(code or 0)  # as `aq` does: no interpreter teardown
"""


@dataclass(frozen=True)
class Config:
    instance: str  # sqlite | postgres
    batch_size: int  # DAGSTER_EVENT_BATCH_SIZE; 0 leaves it unset
    # DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one "planned" event per run and asset
    # holding the partition subset, instead of one per partition
    planned_subset: bool = False
    max_partitions: int = 0  # `aq backfill --max-partitions-per-run`; 0: aq's default

    @property
    def name(self) -> str:
        return (
            self.instance
            + (f"+batch{self.batch_size}" if self.batch_size else "")
            + ("+subset" if self.planned_subset else "")
            + (f"+run{self.max_partitions}" if self.max_partitions else "")
        )

    def backfill_args(self) -> list[str]:
        return ["--max-partitions-per-run", str(self.max_partitions)] if self.max_partitions else []


@dataclass
class Measured:
    wall_s: float
    peak_rss_mib: float
    processes: int = 1
    cpu_s: float = 0.0  # user + system time of the process and its descendants: on a shared,
    # busy machine a single-threaded step's wall time is this plus its wait for a core


@dataclass
class Result:
    sensors: int
    config: Config
    steps: dict[str, Measured] = field(default_factory=dict)
    sensor_days: int = 0
    rows: int = 0


# ---- processes -----------------------------------------------------------------------------


def run_timed(command: Sequence[str], env: dict[str, str], log: Path) -> Measured:
    """Run `command` to the end; its wall time and the peak RSS of its largest process."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(list(command), env=env, stdout=out, stderr=out, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
    return Measured(elapsed, usage.ru_maxrss / 1024, 1, usage.ru_utime + usage.ru_stime)


def add(total: Measured | None, part: Measured) -> Measured:
    if total is None:
        return part
    return Measured(
        total.wall_s + part.wall_s,
        max(total.peak_rss_mib, part.peak_rss_mib),
        total.processes + part.processes,
        total.cpu_s + part.cpu_s,
    )


def aq(*args: str) -> list[str]:
    return [str(BIN / "aq"), *args]


def materialize(selection: str, partition: str | None = None) -> list[str]:
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "aq_assets.definitions"]
    command += ["--select", selection]
    return command + (["--partition", partition] if partition else [])


# ---- instances -----------------------------------------------------------------------------


@contextlib.contextmanager
def instance_home(config: Config, tmp: Path) -> Iterator[dict[str, str]]:
    """A DAGSTER_HOME for `config` under `tmp` and the environment that selects it; for
    postgres, a database of its own, dropped on the way out."""
    home = tmp / "dagster"
    home.mkdir(parents=True)
    # Both set either way: `aq backfill` has defaults of its own for them (cli.py).
    env: dict[str, str] = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_EVENT_BATCH_SIZE": str(config.batch_size),
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": str(config.planned_subset).lower(),
    }
    if config.instance == "sqlite":
        shutil.copyfile(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
        yield env
        return
    with scratch_database("scale") as url:
        shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        env |= {
            "DAGSTER_PG_HOST": PG_HOST,
            "DAGSTER_PG_PORT": str(PG_PORT),
            "DAGSTER_PG_USER": PG_ADMIN,
            "DAGSTER_PG_PASSWORD": os.environ.get("PGPASSWORD", "unused-with-trust-auth"),
            "DAGSTER_PG_DB": url.rsplit("/", 1)[1],
            "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs"),
            "DAGSTER_STORAGE_DIR": str(home / "storage"),
        }
        yield env


def base_env(sensors: int, days: int, tmp: Path, target_only: bool = False) -> dict[str, str]:
    locations = sensors if target_only else sensors // SENSORS_PER_LOCATION
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AQ_", "DAGSTER_", "MLFLOW_"))
    }
    return env | {
        "AQ_HOME": str(tmp / "aq"),
        "AQ_SOURCE": "simulated",
        "AQ_LOCATIONS": ",".join(str(i) for i in range(1, locations + 1)),
        # 30 spare days before the backfill: the loop's ingest and the training window fit.
        "AQ_START_DATE": str(END_DATE - dt.timedelta(days=days + 30)),
        "AQ_END_DATE": str(END_DATE),
        "AQ_SIM_TARGET_ONLY": "1" if target_only else "",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }


def with_threads(env: dict[str, str], threads: int) -> dict[str, str]:
    """`env` with OMP_NUM_THREADS `threads`, or without it for 0: `aq train` then fits as
    many boosters at once as the machine has cores (`fit_workers`)."""
    rest = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}
    return rest | {"OMP_NUM_THREADS": str(threads)} if threads else rest


def stored(aq_home: Path) -> tuple[int, int]:
    """(rows, distinct sensor-days) in the warehouse's raw_readings."""
    import duckdb

    with duckdb.connect(str(aq_home / "warehouse.duckdb"), read_only=True) as con:
        rows, sensor_days = con.execute(
            "SELECT count(*), count(DISTINCT (sensor_id, datetime_utc::DATE)) "
            "FROM ingest.raw_readings"
        ).fetchone() or (0, 0)
    return int(rows), int(sensor_days)


# ---- one size, one configuration -----------------------------------------------------------


def measure(
    sensors: int,
    days: int,
    config: Config,
    steps: Sequence[str],
    log: Path,
    profile: Path | None,
    target_only: bool = False,
    before: tuple[Path, bool] | None = None,  # another checkout's code; whether it trains first
    train_threads: int = 0,  # OMP_NUM_THREADS of `aq train`; 0 leaves it unset (all cores)
) -> Result:
    result = Result(sensors, config)
    with (
        tempfile.TemporaryDirectory(prefix="aq-scale-") as name,
        instance_home(config, Path(name)) as instance_env,
    ):
        tmp = Path(name)
        env = base_env(sensors, days, tmp, target_only) | instance_env

        def step(label: str, command: list[str], step_env: dict[str, str] = env) -> None:
            measured = run_timed(command, step_env, log)
            result.steps[label] = add(result.steps.get(label), measured)
            print(
                f"  {sensors:>5} sensors {config.name:<32} {label:<9} {measured.wall_s:8.1f} s "
                f"(cpu {measured.cpu_s:7.1f} s) {measured.peak_rss_mib:6.0f} MiB  "
                f"({Path(command[0]).name} {' '.join(command[1:4])}; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )

        step("discover", aq("discover"))  # every later step needs the sensors registered
        if "discover" not in steps:
            del result.steps["discover"]
        if "backfill" in steps or "train" in steps or "loop" in steps:
            step("backfill", aq("backfill", "--days", str(days), *config.backfill_args()))
            result.rows, result.sensor_days = stored(tmp / "aq")
            if "backfill" not in steps:
                del result.steps["backfill"]
        if profile is not None:
            # The same backfill again (replacing what it wrote), under cProfile.
            run_timed(
                [
                    sys.executable,
                    "-c",
                    PROFILED_AQ,
                    str(profile),
                    "backfill",
                    "--days",
                    str(days),
                    *config.backfill_args(),
                ],
                env,
                log,
            )
        if "train" in steps or "loop" in steps:
            trains = [("train", env)]
            if before is not None:  # the warehouse as the backfill left it, its own MLflow
                shutil.copytree(tmp / "aq", tmp / "aq-before")
                before_env = env | {
                    "AQ_HOME": str(tmp / "aq-before"),
                    "PYTHONPATH": str(before[0]),
                }
                trains.insert(0 if before[1] else 1, ("train_before", before_env))
            for label, train_env in trains:
                step(label, aq("train"), with_threads(train_env, train_threads))
            if "train" not in steps:
                del result.steps["train"]
        if "loop" in steps:
            # The next day arrives: the calendar moves one day on (AQ_END_DATE is read when
            # the code location loads), the schedule's ingest runs, then the forecasts follow.
            next_env = env | {"AQ_END_DATE": str(END_DATE + dt.timedelta(days=1))}
            step("loop", aq("backfill", "--days", "2"), next_env)
            day = str(END_DATE)
            step("loop", materialize("predictions,forecast_accuracy,drift_report", day), next_env)
            step("loop", materialize("online_features"), next_env)
        if "load" in steps:  # the code location, with this size's sensors registered
            step("load", [sys.executable, "-c", LOAD_DEFINITIONS])
    return result


# ---- reporting -----------------------------------------------------------------------------


def machine_line() -> str:
    import dagster
    import duckdb

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
        f"Python {platform.python_version()}, dagster {dagster.__version__}, "
        f"duckdb {duckdb.__version__}, load average {os.getloadavg()[0]:.1f} at start"
    )


def exponent(points: Sequence[tuple[int, float]]) -> str:
    """The slope of log(seconds) against log(sensors) between successive sizes."""
    slopes = [
        f"{a}->{b}: {math.log(tb / ta) / math.log(b / a):.2f}"
        for (a, ta), (b, tb) in itertools.pairwise(points)
        if ta > 0 and tb > 0
    ]
    return ", ".join(slopes) or "-"


def report(results: list[Result], configs: Sequence[Config], days: int) -> None:
    print(f"\nbackfill {days} days; wall per step (s), peak RSS of the largest process (MiB)")
    header = f"{'sensors':>7} {'config':<32} {'sensor-days':>11} {'rows':>10}"
    for name in REPORTED:
        header += f" {name + ' s':>10} {'MiB':>6}"
    print(header + f" {'ms/sensor-day':>14}")
    for r in results:
        line = f"{r.sensors:>7} {r.config.name:<32} {r.sensor_days:>11,} {r.rows:>10,}"
        for name in REPORTED:
            m = r.steps.get(name)
            line += f" {m.wall_s:10.1f} {m.peak_rss_mib:6.0f}" if m else f" {'-':>10} {'-':>6}"
        backfill = r.steps.get("backfill")
        planned = r.sensors * days
        per_day = f"{1000 * backfill.wall_s / planned:14.2f}" if backfill else f"{'-':>14}"
        print(line + per_day)

    print("\nbackfill: marginal ms per sensor-day between successive sizes (fixed costs cancel)")
    for config in configs:
        points = sorted(
            (r.sensors * days, r.steps["backfill"].wall_s)
            for r in results
            if r.config == config and "backfill" in r.steps
        )
        marginal = ", ".join(
            f"{a}->{b}: {1000 * (tb - ta) / (b - a):.2f}"
            for (a, ta), (b, tb) in itertools.pairwise(points)
        )
        if marginal:
            print(f"  {config.name:<32} {marginal}")

    print("\ngrowth exponent (slope of log wall against log sensors, successive sizes)")
    for config in configs:
        for name in STEPS:
            points = [
                (r.sensors, r.steps[name].wall_s)
                for r in results
                if r.config == config and name in r.steps
            ]
            if len(points) > 1:
                print(f"  {config.name:<32} {name:<9} {exponent(sorted(points))}")

    for r in results:
        if "train" in r.steps and "train_before" in r.steps:
            ratio = r.steps["train"].wall_s / r.steps["train_before"].wall_s
            peak = r.steps["train"].peak_rss_mib / r.steps["train_before"].peak_rss_mib
            print(
                f"\ntrain / train_before, {r.sensors} sensors {r.config.name}: "
                f"wall {ratio:.3f}, peak RSS {peak:.3f}"
            )

    if len(configs) > 1:
        first = configs[0]
        print(f"\nratio to {first.name} (same size, same invocation)")
        for r in results:
            if r.config == first:
                continue
            base = next(b for b in results if b.config == first and b.sensors == r.sensors)
            ratios = ", ".join(
                f"{name} {r.steps[name].wall_s / base.steps[name].wall_s:.2f}"
                for name in STEPS
                if name in r.steps and name in base.steps and base.steps[name].wall_s > 0
            )
            print(f"  {r.sensors:>5} sensors {r.config.name:<32} {ratios}")


def print_profile(path: Path, top: int = 25) -> None:
    stats = pstats.Stats(str(path))
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\ncProfile of one backfill ({total:.1f} s in the profiled call), by cumulative time:")
    stats.sort_stats("cumulative").print_stats(top)
    print("by own time:")
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, nargs="+", default=[20, 100, 500, 1000])
    parser.add_argument("--days", type=int, default=10, help="days the backfill ingests")
    parser.add_argument("--instance", nargs="+", choices=("sqlite", "postgres"), default=["sqlite"])
    parser.add_argument(
        "--event-batch-size",
        type=int,
        nargs="+",
        default=[0],
        help="DAGSTER_EVENT_BATCH_SIZE values to compare; 0 leaves it unset",
    )
    parser.add_argument(
        "--planned-events",
        nargs="+",
        choices=("per-partition", "subset"),
        default=["per-partition"],
        help="subset sets DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
    )
    parser.add_argument(
        "--max-partitions-per-run",
        type=int,
        nargs="+",
        default=[0],
        help="aq backfill's sensor-days per run to compare; 0 is aq's default",
    )
    parser.add_argument("--steps", default="discover,backfill")
    parser.add_argument(
        "--target-only",
        action="store_true",
        help="each site offers its target (pm25) sensor alone: N sensors are N target sensors",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of other code (e.g. before a change) to run `aq train` with too",
    )
    parser.add_argument(
        "--train-threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS of `aq train` (boosters fitted at once); 0, the default, leaves "
        "it unset: the machine's cores, as `aq train` runs by default (every other step: 1)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more backfill")
    parser.add_argument("--log", default=None, help="where the processes' output goes")
    args = parser.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {','.join(STEPS)}")
    per_site = 1 if args.target_only else SENSORS_PER_LOCATION
    odd = [n for n in args.sensors if n % per_site or n <= 0]
    if odd:
        parser.error(
            f"--sensors {odd}: each must be a positive multiple of {per_site} (sensors a site)"
        )
    configs = [
        Config(i, b, p == "subset", m)
        for i in args.instance
        for b in args.event_batch_size
        for p in args.planned_events
        for m in args.max_partitions_per_run
    ]
    log = Path(args.log or tempfile.mkstemp(prefix="aq-scale-", suffix=".log")[1])

    print(machine_line())
    print(
        f"sizes {args.sensors} sensors; {args.days} days; configurations "
        f"{[c.name for c in configs]}; steps {steps} (discover always runs); "
        f"{'target sensors only' if args.target_only else '4 sensors a site'}; log {log}",
        flush=True,
    )
    results: list[Result] = []
    profile = None
    for index, sensors in enumerate(args.sensors):
        order = configs if index % 2 == 0 else configs[::-1]
        for config in order:
            last = index == len(args.sensors) - 1 and config == order[-1]
            if args.profile and last:
                profile = Path(tempfile.mkstemp(prefix="aq-scale-", suffix=".prof")[1])
            results.append(
                measure(
                    sensors,
                    args.days,
                    config,
                    steps,
                    log,
                    profile if last else None,
                    args.target_only,
                    (args.before.resolve(), index % 2 == 1) if args.before else None,
                    args.train_threads,
                )
            )
    results.sort(key=lambda r: (r.sensors, configs.index(r.config)))
    report(results, configs, args.days)
    if profile is not None:
        print_profile(profile)


if __name__ == "__main__":
    main()
