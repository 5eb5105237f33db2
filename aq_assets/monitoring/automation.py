"""Closing the loop: retrain once per failed drift evaluation, and raise alerts."""

import datetime as dt

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    ConfigurableResource,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from aq_assets.model.jobs import train_job
from aq_assets.monitoring.alerts import Alerter

DRIFT_TRIGGER_TAG = "aq/trigger"
_ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


class RetrainPolicy(ConfigurableResource):
    cooldown_hours: float = 12.0
    """After a drift retrain, further drift waits this long before another (AQ_RETRAIN_COOLDOWN_HOURS)."""


@sensor(
    job=train_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests training_set → forecast_model → champion_model once per failed drift evaluation.",
)
def retrain_on_drift(
    context: SensorEvaluationContext, retrain_policy: RetrainPolicy, alerter: Alerter
):
    # A plain sensor over drift_report materializations rather than @asset_sensor, which sees
    # only the newest event per tick: a backfill of several days must not hide a failed one.
    result = context.instance.fetch_materializations(
        AssetKey("drift_report"), limit=200, cursor=context.cursor, ascending=True
    )
    failed = [r for r in result.records if _drift_detected(r)]
    if not failed:
        return SensorResult(
            skip_reason=SkipReason("No failed drift evaluation since the last tick."),
            cursor=result.cursor,
        )
    newest = failed[-1]
    day = newest.partition_key
    if context.instance.get_runs(RunsFilter(job_name=train_job.name, statuses=_ACTIVE), limit=1):
        return SensorResult(
            skip_reason=SkipReason(f"Drift on {day}, but a retraining is already running."),
            cursor=result.cursor,
        )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=retrain_policy.cooldown_hours)
    recent = context.instance.get_runs(
        RunsFilter(tags={DRIFT_TRIGGER_TAG: "drift"}, created_after=since), limit=1
    )
    if recent:
        return SensorResult(
            skip_reason=SkipReason(
                f"Drift on {day}, within the {retrain_policy.cooldown_hours} h cooldown after run {recent[0].run_id}."
            ),
            cursor=result.cursor,
        )
    alerter.send(f"aq: drift detected on {day}; retraining (run key drift-{newest.storage_id}).")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"drift-{newest.storage_id}",
                tags={DRIFT_TRIGGER_TAG: "drift", "aq/drift_day": str(day)},
            )
        ],
        cursor=result.cursor,
    )


def _drift_detected(record) -> bool:
    materialization = record.asset_materialization
    value = materialization.metadata.get("drift_detected") if materialization else None
    return bool(value.value) if value is not None else False


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING, description="Alerts on every failed run."
)
def alert_on_run_failure(context: RunFailureSensorContext, alerter: Alerter) -> None:
    run = context.dagster_run
    alerter.send(f"aq: run {run.run_id} ({run.job_name}) failed: {context.failure_event.message}")


@sensor(
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts on every failed asset check.",
)
def alert_on_failed_checks(context: SensorEvaluationContext, alerter: Alerter):
    records = context.instance.get_event_records(
        EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION,
            after_cursor=int(context.cursor) if context.cursor else None,
        ),
        ascending=True,
        limit=500,
    )
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if isinstance(evaluation, AssetCheckEvaluation) and not evaluation.passed:
            alerter.send(
                f"aq: check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed "
                f"({evaluation.severity.value}) in run {record.event_log_entry.run_id}."
            )
    if records:
        context.update_cursor(str(records[-1].storage_id))
    return SkipReason("Alerts sent for failed checks." if records else "No new check evaluation.")
