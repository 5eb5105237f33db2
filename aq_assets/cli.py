"""`aq`: the main job and partition backfills from the command line.

    aq up                       discover sensors, ingest the last 60 days, train and promote a
                                forecaster, open the Dagster UI
    aq backfill --days 30       ingest the last 30 days for every sensor, in a few large runs
    aq train                    training_set -> forecast_model -> champion_model; exits 3
                                when the promotion gate refused the new model (not an error:
                                the champion is unchanged), 1 when training failed
    aq backfill --start 2025-01-01 --end 2025-12-31 --sensors 9001002,9002002

Runs are real Dagster runs in the instance under DAGSTER_HOME (default `$AQ_HOME/dagster`),
so the UI shows them and their materializations.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

PROJECT_DIR = Path(__file__).resolve().parents[1]
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Training reports its outcome itself: a refusal by the gate is logged by Dagster as a failed
# step with a traceback, which is not what happened.
SILENT_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
GATE_REFUSED = 3  # exit code of `aq train` when the gate kept the old champion
# Dagster's event-log settings for `aq backfill`'s runs, unless the environment sets them:
# a run's "planned" event names its partition range once instead of once per sensor-day, and
# the per-sensor-day "materialized" events are written in batches (one insert on a PostgreSQL
# instance; the sqlite instance writes them one by one as before). 2,500 sensor-days took 244 s
# -> 117 s on sqlite and 153 s -> 10 s on PostgreSQL (benchmarks/README.md, "Scale"). The
# price: the sensor-days of a run that failed show as missing in the UI, not failed, and a
# running backfill's as not in progress; `aq backfill --missing` still finds them.
BACKFILL_EVENT_SETTINGS = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


@dataclass(frozen=True)
class RunChunk:
    """One run of `ingest_job`: a rectangle of days × consecutive sensors."""

    first_day: dt.date
    last_day: dt.date
    sensors: tuple[str, ...]

    @property
    def partitions(self) -> int:
        return ((self.last_day - self.first_day).days + 1) * len(self.sensors)

    def tags(self) -> dict[str, str]:
        return {
            "dagster/asset_partition_range_start": f"{self.first_day}|{self.sensors[0]}",
            "dagster/asset_partition_range_end": f"{self.last_day}|{self.sensors[-1]}",
        }


def plan_chunks(
    first_day: dt.date,
    last_day: dt.date,
    selected: Sequence[str],
    registered: Sequence[str],
    max_partitions: int,
) -> list[RunChunk]:
    """Split days × selected sensors into run-sized rectangles.

    A run's partitions are a range `first|sensor_a ... last|sensor_b`, which Dagster reads as
    every day in between × every sensor registered between a and b. So selected sensors are
    grouped into runs of consecutive registered sensors, and days are split so that no run
    holds more than `max_partitions` sensor-days.
    """
    position = {sensor: i for i, sensor in enumerate(registered)}
    unknown = [s for s in selected if s not in position]
    if unknown:
        raise SystemExit(
            f"aq: sensor(s) {unknown} are not registered partitions; run `aq discover` "
            "(materializes sensor_catalog) or check AQ_LOCATIONS/AQ_PARAMETER."
        )
    ordered = sorted(set(selected), key=position.__getitem__)
    groups: list[list[str]] = []
    for sensor in ordered:
        if (
            groups
            and position[sensor] == position[groups[-1][-1]] + 1
            and len(groups[-1]) < max_partitions
        ):
            groups[-1].append(sensor)
        else:
            groups.append([sensor])
    chunks = []
    for group in groups:
        days_per_run = max(1, max_partitions // len(group))
        start = first_day
        while start <= last_day:
            end = min(last_day, start + dt.timedelta(days=days_per_run - 1))
            chunks.append(RunChunk(start, end, tuple(group)))
            start = end + dt.timedelta(days=1)
    return chunks


def plan_missing(
    first_day: dt.date,
    last_day: dt.date,
    selected: Sequence[str],
    registered: Sequence[str],
    materialized: set[str],
    max_partitions: int,
) -> list[RunChunk]:
    """Runs for the sensor-days of the range not materialized yet (e.g. those a partly
    failed run left): each stretch of consecutive missing days, for the sensors missing
    exactly that stretch, planned as `plan_chunks` plans a range."""
    days = [first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    sensors_by_stretch: dict[tuple[dt.date, dt.date], list[str]] = {}
    for sensor in selected:
        missing = [day for day in days if f"{day}|{sensor}" not in materialized]
        while missing:
            end = 0
            while end + 1 < len(missing) and missing[end + 1] - missing[end] == dt.timedelta(1):
                end += 1
            sensors_by_stretch.setdefault((missing[0], missing[end]), []).append(sensor)
            missing = missing[end + 1 :]
    return [
        chunk
        for (first, last), sensors in sorted(sensors_by_stretch.items())
        for chunk in plan_chunks(first, last, sensors, registered, max_partitions)
    ]


# Not at the repo root: `dagster dev` started there warns that a dagster.yaml outside
# DAGSTER_HOME is not used.
LOCAL_INSTANCE = PROJECT_DIR / "deploy" / "local" / "dagster.yaml"


def dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to `$AQ_HOME/dagster`, with the project's local instance
    config (LOCAL_INSTANCE)."""
    home = Path(
        os.environ.get("DAGSTER_HOME") or Path(os.environ.get("AQ_HOME") or ".aq") / "dagster"
    ).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and LOCAL_INSTANCE.exists():
        shutil.copyfile(LOCAL_INSTANCE, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def open_instance() -> DagsterInstance:
    from dagster import DagsterInstance

    dagster_home()
    instance = DagsterInstance.get()
    # `dagster instance migrate`: a fresh sqlite instance needs it. It prints progress bars
    # for work that takes a moment; they are shown only if it fails.
    shown = io.StringIO()
    try:
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
            instance.upgrade()
    except Exception:
        sys.stderr.write(shown.getvalue())
        raise
    return instance


def load_definitions() -> Definitions:
    from aq_assets.definitions import defs

    return defs


# The daemon retries a failed run by launching it again from its code location; a run `aq`
# executes in its own process has no code location to launch from, so it is never retried.
# Its tags say so: Dagster would tag it `dagster/will_retry=true`.
NOT_RETRIED = {"dagster/max_retries": "0"}


def _execute(job: Any, instance: DagsterInstance, run_config: dict, **kwargs: Any) -> Any:
    """`job` run in this process, its result returned whether or not it succeeded."""
    tags = {**NOT_RETRIED, **kwargs.pop("tags", {})}
    return job.execute_in_process(
        instance=instance, run_config=run_config, tags=tags, raise_on_error=False, **kwargs
    )


def discover(instance: DagsterInstance, defs: Definitions) -> int:
    """Materialize `sensor_catalog`; returns the number of registered sensors."""
    result = _execute(defs.resolve_job_def("catalog_job"), instance, QUIET_LOGS)
    if not result.success:
        raise SystemExit(
            f"aq: sensor discovery failed (run {result.run_id}); see the run in the UI.\n"
            f"{_first_failure(result)}"
        )
    sensors = instance.get_dynamic_partitions("sensor")
    (catalog,) = result.asset_materializations_for_node("sensor_catalog")
    active = catalog.metadata["active_sensors"].value
    # Sensors stay registered (their partitions stay readable) after the source stops
    # offering them; say so, since training and forecasts leave those out.
    out_of_scope = f", {len(sensors) - active} no longer offered" if active < len(sensors) else ""
    print(
        f"sensor_catalog: {len(sensors)} sensors registered{out_of_scope} (run {result.run_id[:8]})"
    )
    return len(sensors)


def backfill(
    instance: DagsterInstance,
    defs: Definitions,
    first_day: dt.date,
    last_day: dt.date,
    sensors: Sequence[str] | None = None,
    max_partitions: int | None = None,
    out: Any = None,
    only_missing: bool = False,
) -> list[str]:
    """Ingest days × sensors in few large runs, with a progress line; returns the run ids.
    `only_missing`: just the sensor-days not materialized yet."""
    from aq_assets import partitions
    from aq_assets.defs.ingest.assets import MAX_PARTITIONS_PER_RUN

    newest = partitions.last_day()
    if max(first_day, last_day) > newest:
        raise SystemExit(
            f"aq: {max(first_day, last_day)} is after the newest complete UTC day, {newest} "
            "(yesterday, or the day before AQ_END_DATE when set); ask for earlier days."
        )
    if first_day > last_day:
        raise SystemExit(f"aq: --start {first_day} is after --end {last_day}; swap them.")
    if first_day < dt.date.fromisoformat(partitions.START_DATE):
        raise SystemExit(
            f"aq: {first_day} is before the first day partition, {partitions.START_DATE}, which "
            f"your exported AQ_START_DATE sets; export AQ_START_DATE={first_day} to reach it."
        )
    registered = instance.get_dynamic_partitions("sensor")
    if not registered:
        raise SystemExit("aq: no sensors registered yet; run `aq discover` first.")
    limit = max_partitions or MAX_PARTITIONS_PER_RUN
    selected = sensors or registered
    if only_missing:
        from dagster import AssetKey

        stored = instance.get_materialized_partitions(AssetKey("raw_readings"))
        chunks = plan_missing(first_day, last_day, selected, registered, stored, limit)
        if not chunks:
            print(f"aq: every sensor-day of {first_day}..{last_day} is stored already.")
            return []
    else:
        chunks = plan_chunks(first_day, last_day, selected, registered, limit)
    with _environment_defaults(BACKFILL_EVENT_SETTINGS):
        return _run_chunks(instance, defs, chunks, out)


@contextlib.contextmanager
def _environment_defaults(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the duration, where the environment does not set them."""
    added = [name for name in values if not os.environ.get(name)]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _run_chunks(
    instance: DagsterInstance, defs: Definitions, chunks: list[RunChunk], out: Any
) -> list[str]:
    job = defs.resolve_job_def("ingest_job")
    total = sum(c.partitions for c in chunks)
    done = rows = 0
    started = time.monotonic()
    run_ids = []
    progress = _Progress(out or sys.stderr, total, len(chunks))
    for index, chunk in enumerate(chunks, start=1):
        result = _execute(job, instance, QUIET_LOGS, tags=chunk.tags())
        run_ids.append(result.run_id)
        if not result.success:
            failure = _first_failure(result)
            raise SystemExit(
                f"aq: run {index}/{len(chunks)} ({result.run_id}) for {chunk.first_day}..{chunk.last_day} "
                f"× {len(chunk.sensors)} sensor(s) failed; earlier runs are kept. The same command "
                f"with --missing retries only what is not stored.\n{failure}"
            )
        done += chunk.partitions
        rows += _rows_written(result)
        progress.update(index, done, rows, time.monotonic() - started)
    progress.finish()
    return run_ids


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did, in the words `aq train` prints."""

    lines: list[str]
    has_champion: bool
    refused: bool  # the gate refused the new model; the champion, if any, is unchanged
    failure: str | None  # the cause, when the run failed for another reason


def training_report(result: Any) -> TrainingReport:
    lines: list[str] = []
    has_champion = False
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if "model_version" in metadata:
            skills = ", ".join(
                f"{k.removeprefix('skill_h')} h {v.value:.1%}"
                for k, v in metadata.items()
                if k.startswith("skill_h")
            )
            lines.append(
                f"forecast_model: version {metadata['model_version'].value}; skill over persistence {skills}"
            )
        if "decision" in metadata:
            lines.append(f"champion_model: {metadata['decision'].value}")
            has_champion = metadata["champion_version"].value != "none"
    failed_checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
    lines += [f"{c.check_name} failed: {c.metadata['reasons'].value}" for c in failed_checks]
    failure = None if result.success or failed_checks else _first_failure(result)
    return TrainingReport(lines, has_champion, bool(failed_checks), failure)


def train(instance: DagsterInstance, defs: Definitions) -> TrainingReport:
    """Run `train_job` and print what happened; a model refused by the gate is reported, not
    an error of `aq`."""
    result = _execute(defs.resolve_job_def("train_job"), instance, SILENT_LOGS)
    report = training_report(result)
    print("\n".join(report.lines))
    if report.failure is not None:
        raise SystemExit(f"aq: training failed (run {result.run_id}).\n{report.failure}")
    return report


def score(instance: DagsterInstance, defs: Definitions, day: dt.date) -> None:
    """Forecast and watch `day` with the champion and refresh the service's snapshot: what
    the automation does for every new day, done here for the last day `aq up` ingested
    (declarative automation acts only on days that arrive after it starts)."""
    from dagster import AssetKey

    job = defs.resolve_implicit_global_asset_job_def()
    for keys, partition in (
        (["predictions", "forecast_accuracy", "drift_report"], str(day)),
        (["online_features"], None),
    ):
        result = _execute(
            job,
            instance,
            QUIET_LOGS,
            asset_selection=[AssetKey(k) for k in keys],
            partition_key=partition,
        )
        if not result.success:
            failure = _first_failure(result)
            raise SystemExit(f"aq: {', '.join(keys)} failed (run {result.run_id}).\n{failure}")
        for event in result.get_asset_materialization_events():
            metadata = event.materialization.metadata
            if "share_drifted" in metadata:
                share = metadata["share_drifted"].value
                print(f"drift_report {day}: share of drifted features {share:.2f}")
            if "rmse_champion_h1" in metadata:
                champion = metadata["rmse_champion_h1"].value
                best = metadata["rmse_best_baseline_h1"].value
                print(
                    f"forecast_accuracy {day}: 1 h RMSE {champion:.2f} (best baseline {best:.2f})"
                )
    print(f"predictions for {day} and the online_features snapshot are written.")


def _first_failure(result: Any) -> str:
    """The cause of a run result's first failed step: the `Failure` it raised (its
    description) or the innermost error, not Dagster's "Execution of step ... failed"."""
    event = next((e for e in result.all_events if e.is_step_failure), None)
    if event is not None:
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return str(data.user_failure_data.description)
        error = data.error
    else:  # failed before any step ran: a resource that would not start carries the error
        event = next(
            (e for e in result.all_events if getattr(e.event_specific_data, "error", None)),
            None,
        )
        if event is None:
            return next((e.message for e in result.all_events if e.is_failure), "")
        error = event.event_specific_data.error
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else event.message or ""


def _rows_written(result: Any) -> int:
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("dagster/row_count")
        if value is not None:
            return int(value.value)
    return 0


class _Progress:
    def __init__(self, out: Any, total: int, runs: int) -> None:
        self.out, self.total, self.runs = out, total, runs
        self.tty = hasattr(out, "isatty") and out.isatty()

    def update(self, run: int, done: int, rows: int, elapsed: float) -> None:
        width = 30
        filled = int(width * done / self.total)
        rate = done / elapsed if elapsed else 0.0
        eta = (self.total - done) / rate if rate else 0.0
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] run {run}/{self.runs} · "
            f"{done:,}/{self.total:,} sensor-days · {rows:,} rows · {elapsed:,.1f} s"
            + (f" · ETA {eta:,.0f} s" if done < self.total else "")
        )
        self.out.write(("\r" + line) if self.tty else line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2025-01-31") from exc


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _day_range(args: argparse.Namespace) -> tuple[dt.date, dt.date]:
    """The days `aq up` or `aq backfill` asked for; computed before the code location loads,
    which fixes the day calendar (see `_start_calendar_by`)."""
    from aq_assets.settings import env_date, newest_day

    yesterday = newest_day(env_date("AQ_END_DATE") or None)
    start: dt.date | None = getattr(args, "start", None)
    end: dt.date | None = getattr(args, "end", None)
    if start is not None or end is not None:
        return start or end or yesterday, end or yesterday
    return yesterday - dt.timedelta(days=args.days - 1), yesterday


ENV_FILE = ".env"  # in the working folder, where `dagster dev` and `dagster asset ...` read it
REMEMBERED = ("AQ_HOME", "DAGSTER_HOME", "AQ_START_DATE")


def load_env_file() -> set[str]:
    """Variables of `.env` that the environment does not set, set from it (as Dagster's own
    commands do); returns their names."""
    from dotenv import dotenv_values

    loaded = set()
    for key, value in dotenv_values(ENV_FILE).items():
        if value and not os.environ.get(key):
            os.environ[key] = value
            loaded.add(key)
    return loaded


def _start_calendar_by(first: dt.date, from_file: set[str], *, up: bool) -> bool:
    """`aq up` starts the day calendar at the first day it ingests (so the UI does not show
    a year of empty partitions); a backfill of earlier days moves it earlier, never later.
    An exported AQ_START_DATE is the user's and stays. Returns whether it moved."""
    from aq_assets.settings import DEFAULT_START_DATE, env_date

    current = env_date("AQ_START_DATE")
    if current and "AQ_START_DATE" not in from_file:
        return False
    start = current or (None if up else DEFAULT_START_DATE)
    if start and dt.date.fromisoformat(start) <= first:
        return False
    os.environ["AQ_START_DATE"] = first.isoformat()
    return True


def remember_for_dagster() -> None:
    """Write the AQ_HOME, DAGSTER_HOME and AQ_START_DATE `aq up` used to `.env`, so that
    `dagster dev` and `dagster asset materialize` run in this folder see what it made."""
    from dotenv import dotenv_values, set_key

    stored = dotenv_values(ENV_FILE)
    written = []
    for key in REMEMBERED:
        value = os.environ.get(key)
        if value and stored.get(key) != value:
            set_key(ENV_FILE, key, value, quote_mode="never")
            written.append(key)
    if written:
        print(f"aq: wrote {', '.join(written)} to {Path(ENV_FILE).resolve()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aq", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="discover sensors, ingest the last days, train and promote a forecaster, forecast "
        "the last day, start the Dagster UI",
    )
    up.add_argument("--days", type=_at_least_one, default=60, help="days to ingest (default 60)")
    up.add_argument(
        "--no-train", action="store_true", help="ingest only: no training, no forecasts"
    )
    up.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    up.add_argument("--no-ui", action="store_true", help="stop after ingesting")
    sub.add_parser("discover", help="materialize sensor_catalog and register new sensors")
    sub.add_parser("train", help="build the training set, train, judge and promote a forecaster")
    bf = sub.add_parser("backfill", help="ingest raw_readings for days × sensors in few large runs")
    bf.add_argument(
        "--days",
        type=_at_least_one,
        default=14,
        help="the last N complete UTC days (default 14)",
    )
    bf.add_argument("--start", type=_date, help="first UTC day (overrides --days)")
    bf.add_argument("--end", type=_date, help="last UTC day (default yesterday)")
    bf.add_argument("--sensors", default="all", help="comma-separated sensor ids, or all (default)")
    bf.add_argument(
        "--max-partitions-per-run", type=_at_least_one, default=None, help="sensor-days per run"
    )
    bf.add_argument(
        "--missing",
        action="store_true",
        help="only the sensor-days of the range not stored yet (what a failed run left)",
    )
    args = parser.parse_args(argv)

    from_file = load_env_file()
    calendar_moved = args.command in ("up", "backfill") and _start_calendar_by(
        _day_range(args)[0], from_file, up=args.command == "up"
    )
    # One absolute AQ_HOME for this process and the UI it may start, wherever they run from.
    os.environ["AQ_HOME"] = str(Path(os.environ.get("AQ_HOME") or ".aq").resolve())
    # mlflow draws a progress bar per artifact download, a screenful per training.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    instance = open_instance()
    defs = load_definitions()
    if args.command == "discover":
        discover(instance, defs)
    elif args.command == "train":
        if train(instance, defs).refused:
            raise SystemExit(GATE_REFUSED)
    elif args.command == "backfill":
        first, last = _day_range(args)
        if calendar_moved:
            remember_for_dagster()
        sensors = (
            None
            if args.sensors == "all"
            else [s.strip() for s in args.sensors.split(",") if s.strip()]
        )
        backfill(
            instance,
            defs,
            first,
            last,
            sensors,
            args.max_partitions_per_run,
            only_missing=args.missing,
        )
    elif args.command == "up":
        discover(instance, defs)
        first, yesterday = _day_range(args)
        backfill(instance, defs, first, yesterday)
        if not args.no_train and train(instance, defs).has_champion:
            score(instance, defs, yesterday)
        remember_for_dagster()
        if not args.no_ui:
            command = [
                "dagster",
                "dev",
                "-w",
                str(PROJECT_DIR / "workspace.yaml"),
                "-p",
                str(args.port),
            ]
            print(
                f"Starting the Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})"
            )
            dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
            # `dagster dev` points at `dg dev`, which wants to be started in the project's
            # folder, where this one reads the `.env` of the folder `aq up` ran in.
            quiet = "ignore:Function `dev_command` is superseded"
            os.environ["PYTHONWARNINGS"] = ",".join(
                w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w
            )
            # A shell starts a background job with SIGINT ignored, and an ignored signal stays
            # ignored across exec; `dagster dev` then ignores SIGTERM too (it maps it to
            # SIGINT's handler), and `kill` left it and its services running.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execv(dagster, command)


def _cause_of_kind(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`error` or the first exception of `kind` it was raised from (`raise ... from`), not
    one that was only being handled when it was raised."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def run() -> None:
    """The `aq` command: `main`, then exit without the interpreter's teardown. Every run is
    finished and every DuckDB connection closed by then, but one closed connection object of
    the in-process Dagster runs stays referenced from DuckDB's own bindings (after `aq up`
    writes `sensor_catalog`), and at teardown DuckDB 2's nanobind prints ~40 lines of
    "leaked instances" after the command's last line, which should be its result."""
    from aq_assets.settings import SettingError

    try:
        main()
        code: int | str | None = 0
    except SystemExit as exit_:
        code = exit_.code
    except Exception as error:
        # A setting read before any run (as the code location loads): its message says it
        # all, where Dagster's loader would wrap it in two screens of component tree.
        setting = _cause_of_kind(error, SettingError)
        if setting is None:
            raise
        code = f"aq: {setting}"
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
