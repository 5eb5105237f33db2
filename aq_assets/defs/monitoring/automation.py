"""Closing the loop: retrain once per confirmed drift or accuracy loss, and raise alerts."""

import datetime as dt
import json
import time

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    ConfigurableResource,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from aq_assets.defs.model import jobs  # the module: autoloading then finds each job once
from aq_assets.defs.monitoring.alerts import Alerter
from aq_assets.settings import sensor_interval_seconds

DRIFT_TRIGGER_TAG = "aq/trigger"
DRIFT_DAY_TAG = "aq/drift_day"
# The champion whose alarm asked for the run.
CHAMPION_TAG = "aq/champion_version"
_PLANNED_CHECK_EXPIRY_S = 24 * 3600
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


class RetrainPolicy(ConfigurableResource):
    cooldown_hours: float = 12.0
    """After a drift retrain, further drift waits this long before another (AQ_RETRAIN_COOLDOWN_HOURS)."""
    retry_days: int = 14
    """After a retraining asked for by a champion's alarm, that champion's further alarms wait
    this many days of data before asking again (AQ_RETRAIN_RETRY_DAYS). When the candidate
    passed, a new champion serves and its alarms are its own; when it did not, the accuracy
    check's next alarms weigh mostly the same 14 days the refused candidate was judged on, and
    a retraining a day later would learn one more day."""


# What asks for a retraining: a materialization whose metadata flag is true.
RETRAIN_TRIGGERS = {"drift_report": "drift_detected", "forecast_accuracy": "accuracy_lost"}
_TRIGGER_NAMES = {"drift_report": "drift", "forecast_accuracy": "accuracy"}


@sensor(
    job=jobs.train_job,
    minimum_interval_seconds=sensor_interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests training_set → forecast_model → champion_model once per confirmed "
    "drift (drift_report) or accuracy loss against the baselines (forecast_accuracy), at most "
    "once per champion within AQ_RETRAIN_RETRY_DAYS days of alarms.",
)
def retrain_on_drift(
    context: SensorEvaluationContext, retrain_policy: RetrainPolicy, alerter: Alerter
):
    # A plain sensor over materializations rather than @asset_sensor, which sees only the
    # newest event per tick: a backfill of several days must not hide a failed one.
    cursors = json.loads(context.cursor) if context.cursor else {}
    failed = []
    for asset, flag in RETRAIN_TRIGGERS.items():
        result = context.instance.fetch_materializations(
            AssetKey(asset), limit=200, cursor=cursors.get(asset), ascending=True
        )
        cursors[asset] = result.cursor
        failed += [(r.storage_id, asset, r) for r in result.records if _flagged(r, flag)]
    cursor = json.dumps(cursors)
    if not failed:
        return SensorResult(
            skip_reason=SkipReason("No confirmed drift or accuracy loss since the last tick."),
            cursor=cursor,
        )
    _, asset, newest = max(failed, key=lambda f: f[0])
    trigger, day = _TRIGGER_NAMES[asset], newest.partition_key
    if context.instance.get_runs(
        RunsFilter(job_name=jobs.train_job.name, statuses=_ACTIVE), limit=1
    ):
        return SensorResult(
            skip_reason=SkipReason(f"{trigger} on {day}, but a retraining is already running."),
            cursor=cursor,
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=retrain_policy.cooldown_hours)
    for name in _TRIGGER_NAMES.values():
        recent = context.instance.get_runs(
            RunsFilter(tags={DRIFT_TRIGGER_TAG: name}, created_after=since), limit=1
        )
        if recent:
            return SensorResult(
                skip_reason=SkipReason(
                    f"{trigger} on {day}, within the {retrain_policy.cooldown_hours} h cooldown "
                    f"after run {recent[0].run_id}."
                ),
                cursor=cursor,
            )
    version = _metadata_value(newest, "model_version")
    asked = _asked_recently(context, version, day, retrain_policy.retry_days)
    if asked is not None:
        retry = dt.date.fromisoformat(asked) + dt.timedelta(days=retrain_policy.retry_days)
        return SensorResult(
            skip_reason=SkipReason(
                f"{trigger} on {day}: champion version {version} was already retrained on the "
                f"alarm of {asked}; its alarms ask again from {retry} "
                f"(AQ_RETRAIN_RETRY_DAYS={retrain_policy.retry_days})."
            ),
            cursor=cursor,
        )
    run_key = f"{trigger}-{newest.storage_id}"
    alerter.send(f"aq: {trigger} on {day} ({asset}); retraining (run key {run_key}).")
    tags = {DRIFT_TRIGGER_TAG: trigger, DRIFT_DAY_TAG: str(day)}
    if version is not None and day is not None:  # what `_asked_recently` reads
        tags[CHAMPION_TAG] = str(version)
    return SensorResult(run_requests=[RunRequest(run_key=run_key, tags=tags)], cursor=cursor)


def _asked_recently(
    context: SensorEvaluationContext, version: object, day: str | None, retry_days: int
) -> str | None:
    """The latest alarm day, fewer than `retry_days` days before `day`, of a retraining that
    champion `version`'s alarm asked for and that judged a candidate (materialized
    forecast_model, whether the gate then passed it or failed the run); None when there is
    none. A retraining that failed before it could judge one may be asked for again."""
    if version is None or day is None or retry_days <= 0:
        return None
    runs = context.instance.get_runs(RunsFilter(tags={CHAMPION_TAG: str(version)}), limit=100)
    if not runs:
        return None
    judged = {
        record.run_id
        for record in context.instance.fetch_materializations(
            AssetKey("forecast_model"), limit=200, ascending=False
        ).records
    }
    today = dt.date.fromisoformat(day)
    days = [
        dt.date.fromisoformat(run.tags[DRIFT_DAY_TAG])
        for run in runs
        if run.run_id in judged and DRIFT_DAY_TAG in run.tags
    ]
    recent = [d for d in days if 0 <= (today - d).days < retry_days]
    return str(max(recent)) if recent else None


def _metadata_value(record, key: str) -> object:
    materialization = record.asset_materialization
    value = materialization.metadata.get(key) if materialization else None
    return value.value if value is not None else None


def _flagged(record, flag: str) -> bool:
    return bool(_metadata_value(record, flag))


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts on every failed run.",
    # Runs that `aq` executes in its own process belong to no code location: watching only
    # this one would leave a failed `aq backfill` or `aq train` without an alert.
    monitor_all_code_locations=True,
)
def alert_on_run_failure(context: RunFailureSensorContext, alerter: Alerter) -> None:
    run = context.dagster_run
    alerter.send(f"aq: run {run.run_id} ({run.job_name}) failed: {context.failure_event.message}")


@sensor(
    minimum_interval_seconds=sensor_interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts on every failed asset check.",
)
def alert_on_failed_checks(context: SensorEvaluationContext, alerter: Alerter):
    # Check executions live in one index table on every storage (the sqlite event log is
    # sharded per run, so a cross-run event query with a plain cursor is refused there).
    # The cursor is the id below which every execution has been seen resolved; executions
    # above it that were already alerted are remembered so none is sent twice.
    storage = context.instance.event_log_storage
    assert context.repository_def, "the sensor runs inside its code location"
    check_keys = sorted(context.repository_def.asset_graph.asset_check_keys, key=str)
    if not context.cursor:
        # Like Dagster's run status sensors, start from now: history is not news, and a
        # first start after a backfill must not replay every old failure to the webhook.
        latest = (storage.get_asset_check_execution_history(key, limit=1) for key in check_keys)
        start = max((records[0].id for records in latest if records), default=0)
        context.update_cursor(json.dumps({"below": start, "sent": []}))
        return SkipReason("Started: alerts on checks that fail from now on.")
    seen = json.loads(context.cursor)
    below: int = seen["below"]
    sent: set[int] = set(seen["sent"])
    pending: list[int] = []
    newest = below
    for check_key in check_keys:
        for record in storage.get_asset_check_execution_history(check_key, limit=200):
            if record.id <= below:
                break
            newest = max(newest, record.id)
            event = record.event.dagster_event if record.event else None
            evaluation = event.event_specific_data if event else None
            if not isinstance(evaluation, AssetCheckEvaluation):
                # Planned, not yet evaluated; one planned for a day belongs to a dead run.
                if record.create_timestamp > time.time() - _PLANNED_CHECK_EXPIRY_S:
                    pending.append(record.id)
            elif not evaluation.passed and record.id not in sent:
                sent.add(record.id)
                run = context.instance.get_run_by_id(record.run_id)
                partition = record.partition or (run.tags.get("dagster/partition") if run else None)
                alerter.send(
                    f"aq: check {check_key.name} on {check_key.asset_key.to_user_string()} failed"
                    f" ({evaluation.severity.value}){f' for {partition}' if partition else ''}"
                    f" in run {record.run_id}."
                )
    below = min(pending) - 1 if pending else newest
    context.update_cursor(
        json.dumps({"below": below, "sent": sorted(i for i in sent if i > below)})
    )
    return SkipReason("Checked for failed asset checks; alerts are sent, not runs.")
