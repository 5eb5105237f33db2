"""The loop under a real `dagster-daemon`: a drifted day arrives, the automation sensor runs
predictions and the drift report, the check fails, the retrain sensor launches the training,
and the MLflow `champion` alias moves. Observed through Dagster's instance and MLflow."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from aq_assets.defs.model.tracking import MLflowTracking

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEADLINE_S = 900  # a wait bound for loaded CI machines; the measured time is printed


def workdir(env: dict[str, str]) -> Path:
    """The test's own folder, not the repo: `aq up` writes `.env` there, and Dagster's
    processes obey the `.env` of the folder they start in."""
    return Path(env["AQ_HOME"]).parent


def run_aq(*args: str, env: dict[str, str], exit_code: int = 0) -> None:
    done = subprocess.run(
        [str(BIN / "aq"), *args],
        env=env,
        cwd=workdir(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == exit_code, done.stderr[-3000:]
    assert "leaked" not in done.stderr, done.stderr[-3000:]  # the last lines are aq's own


# A fixed calendar (AQ_END_DATE), so the data, the model and the drift verdicts are the same
# on every run, whatever today is: the simulated world's days are deterministic.
DRIFT_DAY = dt.date(2025, 6, 10)


@pytest.fixture
def env(tmp_path):
    env = {
        **os.environ,
        "AQ_HOME": str(tmp_path / "aq"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "AQ_SOURCE": "simulated",
        # the sensors look every 5 s, not 30: the test waits on them three times
        "AQ_SENSOR_INTERVAL_SECONDS": "5",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("AQ_SIM_DRIFT", None)
    return env


def wait_for(what: str, condition, deadline: float):
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)  # polling Dagster's own records; the deadline bounds it
    raise AssertionError(f"Timed out waiting for {what}")


def _materializations(env: dict[str, str], asset: str) -> list:
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return list(instance.fetch_materializations(AssetKey(asset), limit=10).records)


def drift_verdict(instance: DagsterInstance):
    """The latest execution of the drift check and its evaluation (None while it runs)."""
    key = AssetCheckKey(AssetKey("drift_report"), "no_significant_drift")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    if record is None or record.event is None:
        return record, None
    evaluation = record.event.dagster_event.event_specific_data
    # While the check runs its latest record is the planned event, with no verdict yet.
    return record, evaluation if isinstance(evaluation, AssetCheckEvaluation) else None


def ticked(instance: DagsterInstance, sensor_name: str = "aq_automation") -> bool:
    """Whether the daemon has finished one evaluation of the sensor."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == sensor_name:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
            return any(tick.status != TickStatus.STARTED for tick in ticks)
    return False


@pytest.mark.slow(minutes=3)
def test_drift_under_the_daemon_moves_the_champion(env, webhook):
    # The main job without the UI, the day before the drift being "yesterday": discover,
    # ingest 50 days, train, forecast and check that day, write the service's snapshot.
    before = {**env, "AQ_END_DATE": str(DRIFT_DAY)}
    run_aq("up", "--no-ui", "--days", "50", env=before)
    scored = [r.partition_key for r in _materializations(env, "drift_report")]
    assert scored == [str(DRIFT_DAY - dt.timedelta(days=1))]
    tracking = MLflowTracking(aq_home=env["AQ_HOME"])
    assert tracking.champion_version() == 1
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        _, stable = drift_verdict(instance)
        assert stable is not None and stable.passed, "no drift alarm on stable data"

    # Two days later, the daemon runs and two days arrive with pm25 doubled: drift must
    # hold on two consecutive days to fail the check.
    confirmed_day = DRIFT_DAY + dt.timedelta(days=1)
    drifted = {
        **env,
        "AQ_END_DATE": str(confirmed_day + dt.timedelta(days=1)),
        "AQ_SIM_DRIFT": f"level_shift@{DRIFT_DAY}",
        "AQ_ALERT_WEBHOOK_URL": webhook[0],
    }
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        env=drifted,
        cwd=workdir(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        instance = DagsterInstance.get()
        deadline = time.monotonic() + DEADLINE_S
        # Declarative automation acts only on what changes after its first evaluation (what
        # was there before is history, not news): the new readings must land after that tick.
        wait_for("the automation sensor's first tick", lambda: ticked(instance), deadline)
        run_aq("backfill", "--start", str(DRIFT_DAY), "--end", str(confirmed_day), env=drifted)

        def failed_check():
            record, evaluation = drift_verdict(instance)
            return record if evaluation is not None and not evaluation.passed else None

        failed = wait_for("the drift check to fail", failed_check, deadline)
        failed_at = failed.event.timestamp

        retrain = wait_for(
            "the retrain run",
            lambda: instance.get_runs(RunsFilter(tags={"aq/trigger": "drift"}), limit=1),
            deadline,
        )[0]
        assert retrain.tags["aq/drift_day"] == str(confirmed_day)
        assert retrain.job_name == "train_job"

        wait_for("the champion alias to move", lambda: tracking.champion_version() == 2, deadline)
        promoted_at = time.time()
        finished = instance.get_run_by_id(retrain.run_id)
        assert finished.status in (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS)
        assert len(instance.get_runs(RunsFilter(tags={"aq/trigger": "drift"}))) == 1
        print(f"failed drift check -> new champion: {promoted_at - failed_at:.0f} s")

        # A run `aq` executes in its own process fails (a setting read when the run starts):
        # the daemon's failure sensor alerts on it too.
        run_aq("backfill", "--days", "1", env={**drifted, "AQ_SIM_DRIFT": "foo@2025"}, exit_code=1)
        failed_run = next(r for r in instance.get_runs(limit=1) if r.job_name == "ingest_job")
        alert = wait_for(
            "the alert on the failed `aq backfill` run",
            lambda: [m for m in webhook[1] if failed_run.run_id in m["text"]],
            deadline,
        )
        assert "(ingest_job) failed" in alert[0]["text"]
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
