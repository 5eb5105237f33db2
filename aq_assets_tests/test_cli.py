"""`aq` and `dagster asset materialize`: real runs in a temporary DAGSTER_HOME and AQ_HOME."""

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from aq_assets.cli import BACKFILL_EVENT_SETTINGS, main, plan_chunks, plan_missing
from aq_assets.defs.ingest.catalog import sensors_by_id
from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.simulated import SimulatedSource
from aq_assets.warehouse import DuckDBWarehouse, PostgresWarehouse
from aq_assets_tests.conftest import free_port
from aq_assets_tests.postgres import scratch_database

DAY = dt.date(2025, 6, 1)
SENSORS = [f"{loc}{p:03d}" for loc in range(9001, 9006) for p in (1, 2, 7, 10)]


def test_a_year_of_twenty_sensors_fits_in_four_runs():
    chunks = plan_chunks(dt.date(2025, 1, 1), dt.date(2025, 12, 31), SENSORS, SENSORS, 2000)
    assert len(chunks) == 4
    assert sum(c.partitions for c in chunks) == 365 * 20
    assert all(c.partitions <= 2000 and c.sensors == tuple(SENSORS) for c in chunks)
    assert chunks[0].tags() == {
        "dagster/asset_partition_range_start": "2025-01-01|9001001",
        "dagster/asset_partition_range_end": "2025-04-10|9005010",
    }


def test_scattered_sensors_are_grouped_into_contiguous_ranges():
    chunks = plan_chunks(
        DAY, DAY + dt.timedelta(days=9), ["9003002", "9001002", "9001001"], SENSORS, 2000
    )
    assert [c.sensors for c in chunks] == [("9001001", "9001002"), ("9003002",)]
    assert [c.partitions for c in chunks] == [20, 10]


def test_missing_sensor_days_are_planned_as_stretches_shared_by_sensors():
    days = [DAY + dt.timedelta(days=d) for d in range(5)]
    stored = {f"{day}|{sensor}" for day in days for sensor in SENSORS[:4]}
    stored -= {f"{days[0]}|9001002", f"{days[3]}|9001002", f"{days[4]}|9001002"}
    stored -= {f"{days[2]}|{sensor}" for sensor in ("9001001", "9001007", "9001010")}

    chunks = plan_missing(days[0], days[-1], SENSORS[:4], SENSORS, stored, 2000)

    assert [(c.first_day.day, c.last_day.day, c.sensors) for c in chunks] == [
        (1, 1, ("9001002",)),
        (3, 3, ("9001001",)),
        (3, 3, ("9001007", "9001010")),  # consecutive sensors, one run
        (4, 5, ("9001002",)),
    ]


def test_an_unknown_sensor_names_itself():
    with pytest.raises(SystemExit, match=r"\['42'\] are not registered"):
        plan_chunks(DAY, DAY, ["42"], SENSORS, 2000)


def test_aq_discover_says_which_sensors_are_no_longer_offered():
    """A location taken out of AQ_LOCATIONS stays registered (its partitions stay readable);
    discover says how many such sensors training and forecasts now leave out. (Each `aq` in
    a process of its own: the code location reads AQ_LOCATIONS as it loads.)"""
    aq = str(Path(sys.executable).with_name("aq"))

    def discover(locations: str) -> str:
        env = {**os.environ, "AQ_LOCATIONS": locations}
        done = subprocess.run(
            [aq, "discover"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    first, second = discover("9001,9002"), discover("9001")

    catalog = DuckDBWarehouse(aq_home=os.environ["AQ_HOME"]).read("ingest", "sensor_catalog")
    gone = catalog.loc[~catalog["active"]]
    assert "no longer offered" not in first
    assert len(gone) > 0 and set(gone["location_id"]) == {9002}
    assert f"sensors registered, {len(gone)} no longer offered" in second
    assert f"sensor_catalog: {len(catalog)} sensors registered" in second


def test_aq_backfill_ingests_every_sensor_day_in_few_runs(tmp_path, capsys):
    main(["discover"])
    main(
        [
            "backfill",
            "--start",
            "2025-06-01",
            "--end",
            "2025-06-05",
            "--sensors",
            "9001002,9002002,9001001",
            "--max-partitions-per-run",
            "6",
        ]
    )

    instance = DagsterInstance.get()
    runs = instance.get_runs(RunsFilter(job_name="ingest_job"))
    assert len(runs) == 3  # 2 adjacent sensors: 3 + 2 days; 1 sensor: all 5 days in one run
    assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
    materialized = instance.get_materialized_partitions(AssetKey("raw_readings"))
    assert len(materialized) == 15
    with duckdb.connect(
        os.path.join(os.environ["AQ_HOME"], "warehouse.duckdb"), read_only=True
    ) as con:
        per_day = con.sql(
            "SELECT sensor_id, date_trunc('day', datetime_utc) AS d, count(*) AS n "
            "FROM ingest.raw_readings GROUP BY ALL"
        ).fetchall()
    assert len(per_day) == 15 and all(0 < n <= 24 for _, _, n in per_day)
    assert "15/15 sensor-days" in capsys.readouterr().err


def planned_events(instance: DagsterInstance, run_id: str) -> int:
    return len(instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED))


@pytest.mark.parametrize("exported", [None, "false"])
def test_aq_backfill_plans_a_run_in_one_event_unless_told_otherwise(monkeypatch, exported):
    """One "planned" event per run, not per sensor-day, unless the user exported the setting;
    either way the process's environment is as before once the backfill is done."""
    for name in BACKFILL_EVENT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    if exported is not None:
        monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", exported)
    main(["discover"])
    main(
        ["backfill", "--start", "2025-06-01", "--end", "2025-06-03", "--sensors", "9001002,9001007"]
    )

    instance = DagsterInstance.get()
    (run,) = instance.get_runs(RunsFilter(job_name="ingest_job"))
    assert run.status == DagsterRunStatus.SUCCESS
    assert len(instance.get_materialized_partitions(AssetKey("raw_readings"))) == 6
    assert planned_events(instance, run.run_id) == (1 if exported is None else 6)
    assert os.environ.get("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS") == exported
    assert "DAGSTER_EVENT_BATCH_SIZE" not in os.environ


@pytest.mark.slow(minutes=1)
def test_dagster_cli_materializes_one_partition(tmp_path):
    main(["discover"])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "aq_assets.definitions",
        "--select",
        "raw_readings",
        "--partition",
        "2025-06-01|9001002",
    ]
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr
    with duckdb.connect(
        os.path.join(os.environ["AQ_HOME"], "warehouse.duckdb"), read_only=True
    ) as con:
        count, sensors = con.execute(
            "SELECT count(*), count(DISTINCT sensor_id) FROM ingest.raw_readings"
        ).fetchone()
    assert sensors == 1 and 0 < count <= 24


def test_aq_prints_no_warnings_a_user_cannot_act_on(tmp_path):
    """Dagster's beta notices and job-lookup warnings are not for `aq`'s users."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    aq = str(Path(sys.executable).with_name("aq"))
    for args in (["discover"], ["backfill", "--start", "2025-06-01", "--end", "2025-06-01"]):
        done = subprocess.run([aq, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Warning" not in done.stdout + done.stderr, done.stderr[-3000:]


def test_mlflow_advice_about_choices_aq_made_is_not_printed():
    import logging
    import warnings

    from aq_assets.defs.model.tracking import _quiet_mlflow_advice

    _quiet_mlflow_advice()
    record = logging.LogRecord(
        "mlflow.pyfunc",
        logging.WARNING,
        __file__,
        1,
        "Passing a Python object as `python_model` causes it to be serialized using CloudPickle",
        None,
        None,
    )
    assert not logging.getLogger("mlflow.pyfunc").filter(record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(
            "Hint: Inferred schema contains integer column(s).", UserWarning, stacklevel=1
        )
    assert caught == []


REPO = Path(__file__).resolve().parents[1]


def readme_command(starting: str) -> str:
    """The README's command line that starts with `starting`, exactly as written."""
    lines = (REPO / "README.md").read_text().splitlines()
    (line,) = [line for line in lines if line.startswith(starting)]
    return line


def readme_block(section: str) -> list[str]:
    """The command lines of the first code block of a README section, as written."""
    text = (REPO / "README.md").read_text()
    block = text.split(f"## {section}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def run_as_written(command: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (command, done.stderr[-3000:])


@pytest.mark.slow(minutes=2)
def test_the_readme_dagster_command_works_as_written_after_aq_up(tmp_path):
    """In a fresh folder with no DAGSTER_HOME, AQ_HOME or AQ_START_DATE exported: `aq up`
    writes them to `.env`, and the README's `dg launch` and plain `dagster asset materialize`
    find the same instance, warehouse and day calendar."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DAGSTER_HOME", "AQ_HOME", "AQ_START_DATE", "PYTHONWARNINGS"}
    }
    up = subprocess.run(
        [".venv/bin/aq", "up", "--days", "2", "--no-train", "--no-ui"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    written = dict(
        line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if line
    )
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert written["AQ_START_DATE"] == str(yesterday - dt.timedelta(days=1))
    assert written["AQ_HOME"] == str(tmp_path / ".aq")
    assert written["DAGSTER_HOME"] == str(tmp_path / ".aq" / "dagster")

    # `dg` finds the project by its pyproject.toml ([tool.dg]), as in the repository root.
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for starting in (".venv/bin/dg launch", ".venv/bin/dagster asset materialize"):
        run_as_written(readme_command(starting), tmp_path, env)
    instance = DagsterInstance.from_config(written["DAGSTER_HOME"])
    runs = instance.get_runs(RunsFilter(tags={"dagster/partition": f"{yesterday}|9001002"}))
    assert [r.status for r in runs][:2] == [DagsterRunStatus.SUCCESS] * 2
    assert not list(tmp_path.glob(".tmp_dagster_home_*"))

    # The Backfills section's `aq` commands, as written: one reaches back to 2025-01-01, before
    # the calendar `aq up` started, which moves the calendar (and `.env`) back to it.
    for command in readme_block("Backfills"):
        run_as_written(command, tmp_path, env)
    assert "AQ_START_DATE=2025-01-01" in (tmp_path / ".env").read_text()


def test_a_failing_setup_ends_with_what_failed_and_what_to_do(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts")
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")],
        env={**os.environ, "PYTHON": "/bin/false"},  # no usable Python
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('scripts/setup.sh: `"$python" -m venv .venv` failed'), last
    assert "Python 3.11" in last and "PYTHON=" in last


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--start", "2030-01-01"], "2030-01-01 is after the newest complete UTC day"),
        (["--start", "2025-06-05", "--end", "2025-06-01"], "--start 2025-06-05 is after --end"),
    ],
    ids=["future", "reversed"],
)
def test_a_day_range_aq_cannot_ingest_says_what_is_wrong(args, says):
    main(["discover"])
    with pytest.raises(SystemExit) as exit_:
        main(["backfill", *args])
    assert says in str(exit_.value.code) and "AQ_START_DATE" not in str(exit_.value.code)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AQ_START_DATE", "2025-13-01"),  # read before anything loads
        ("AQ_RETRAIN_COOLDOWN_HOURS", "abc"),  # read as the code location loads
        ("AQ_SOURCE", "foo"),
    ],
)
def test_a_setting_aq_cannot_use_is_named_on_one_line(variable, value):
    """Not two screens of Dagster's component tree with the cause in the middle."""
    aq = str(Path(sys.executable).with_name("aq"))
    env = {**os.environ, variable: value}

    done = subprocess.run([aq, "discover"], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[-1]], done.stderr[
        -3000:
    ]
    assert done.stderr.startswith(f"aq: {variable}={value!r} is not"), done.stderr


@pytest.mark.parametrize("option", ["--days", "--max-partitions-per-run"])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_a_count_of_days_or_runs_must_be_at_least_one(option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backfill", option, value])

    assert exit_.value.code == 2
    assert f"{option}: {value!r} is not a whole number of at least 1" in capsys.readouterr().err


def test_a_run_that_fails_before_any_step_ends_with_its_cause():
    """A resource that would not start: the cause, not Dagster's "Execution ... failed"."""
    aq = str(Path(sys.executable).with_name("aq"))
    env = {**os.environ, "AQ_LOCATIONS": "abc"}

    done = subprocess.run([aq, "discover"], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "AQ_LOCATIONS='abc'" in last and "is not a positive integer id" in last, last
    # Nothing can launch a run of aq's own process again: its tags do not promise a retry.
    with DagsterInstance.get() as instance:
        failed = instance.get_runs(RunsFilter(job_name="catalog_job"), limit=1)[0]
    assert failed.status == DagsterRunStatus.FAILURE
    assert failed.tags["dagster/will_retry"] == "false"


@pytest.mark.slow(minutes=1)
def test_aq_up_started_in_the_background_stops_on_sigterm(tmp_path):
    """A shell starts a background job with SIGINT ignored, which `dagster dev` (exec'd by
    `aq up`) inherited and then ignored SIGTERM too: `kill` left it and its services up."""
    import signal
    import urllib.request

    port = free_port()
    env = {**os.environ, "AQ_HOME": str(tmp_path / "aq"), "DAGSTER_HOME": str(tmp_path / "dg")}
    aq = str(Path(sys.executable).with_name("aq"))
    up = subprocess.Popen(
        [aq, "up", "--days", "1", "--no-train", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` does
    )
    try:
        deadline = time.monotonic() + 240

        def serving() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    return True
            except OSError:
                return False

        while not serving():
            assert up.poll() is None, "aq up ended before the UI served"
            assert time.monotonic() < deadline, "the UI did not serve in 240 s"
            time.sleep(1)  # polling the webserver; the deadline bounds it

        up.send_signal(signal.SIGTERM)

        assert up.wait(timeout=60) is not None
        assert not serving()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)


@pytest.mark.slow(minutes=1)
def test_two_machines_ingest_overlapping_days_into_one_postgresql_warehouse_at_once(tmp_path):
    """Two `aq` processes, each with its own Dagster instance and AQ_HOME as on two machines,
    discover the sensors and backfill overlapping days into one PostgreSQL warehouse at the
    same time: no run fails, no reading is stored twice, and the table holds what one writer
    of all the days would have stored."""
    days = {
        "a": (DAY, DAY + dt.timedelta(days=3)),
        "b": (DAY + dt.timedelta(days=2), DAY + dt.timedelta(days=5)),
    }
    aq = str(Path(sys.executable).with_name("aq"))
    with scratch_database("two_writers") as url:
        envs = {}
        for name in days:
            (tmp_path / name).mkdir()
            envs[name] = {
                **os.environ,
                "AQ_WAREHOUSE_URL": url,
                "AQ_HOME": str(tmp_path / name / "aq"),
                "DAGSTER_HOME": str(tmp_path / name / "dagster"),
                "AQ_LOCATIONS": "9001",
                "PYTHONWARNINGS": "ignore",
            }
        # Both discover, then both backfill: each phase starts the two together.
        side_by_side(tmp_path, envs, {name: [aq, "discover"] for name in days})
        backfills = {
            # --max-partitions-per-run 4: a day of the location's 4 sensors per run
            name: [
                aq,
                "backfill",
                "--start",
                str(first),
                "--end",
                str(last),
                "--max-partitions-per-run",
                "4",
            ]
            for name, (first, last) in days.items()
        }
        for name, err in side_by_side(tmp_path, envs, backfills).items():
            assert "16/16 sensor-days" in err, (name, err[-3000:])
        spans = {name: ingest_span(tmp_path / name / "dagster") for name in days}
        print(f"\ningest runs: {spans}")
        assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values()), spans
        warehouse = PostgresWarehouse(aq_home=str(tmp_path), url=url)
        stored = warehouse.query("SELECT sensor_id, datetime_utc, value FROM ingest.raw_readings")
        catalog = warehouse.read("ingest", "sensor_catalog")

    assert not stored.duplicated(["sensor_id", "datetime_utc"]).any()
    sensors = sensors_by_id(catalog, sorted(catalog["sensor_id"]))
    every_day = [DAY + dt.timedelta(days=i) for i in range(6)]
    one_writer = collect_readings(
        SimulatedSource(parameter="pm25", locations="9001"),
        [(sensor, day) for day in every_day for sensor in sensors.values()],
        pd.Timestamp("2025-07-01"),
    ).readings
    columns = ["sensor_id", "datetime_utc", "value"]
    pd.testing.assert_frame_equal(
        stored.sort_values(columns[:2]).reset_index(drop=True),
        one_writer[columns].sort_values(columns[:2]).reset_index(drop=True),
        check_dtype=False,
    )
    assert len(sensors) == 4 and len(stored) > 20 * 4 * 6


def ingest_span(dagster_home: Path) -> tuple[float, float]:
    """From the start of the first ingest run of an instance to the end of its last."""
    instance = DagsterInstance.from_config(str(dagster_home))
    records = instance.get_run_records(RunsFilter(job_name="ingest_job"))
    assert records and {r.dagster_run.status for r in records} == {DagsterRunStatus.SUCCESS}
    return min(r.start_time or 0.0 for r in records), max(r.end_time or 0.0 for r in records)


def side_by_side(
    cwd: Path, envs: dict[str, dict[str, str]], commands: dict[str, list[str]]
) -> dict[str, str]:
    """Start every command at once, each in its own folder and environment; their stderr,
    after every one has succeeded."""
    started = {
        name: subprocess.Popen(
            command,
            cwd=cwd / name,
            env=envs[name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in commands.items()
    }
    errors = {name: process.communicate(timeout=300)[1] for name, process in started.items()}
    for name, process in started.items():
        assert process.returncode == 0, (name, commands[name], errors[name][-3000:])
    return errors
