"""The loop that keeps the model right: drift fails the check, the sensor retrains once, the
new champion serves, the check passes again; the schedule, the sensor's run keys and alerts."""

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    Definitions,
    Field,
    MaterializeResult,
    asset,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from aq_assets.defs.ingest.automation import ingest_latest_days
from aq_assets.defs.monitoring.alerts import Alerter
from aq_assets.defs.monitoring.automation import (
    RetrainPolicy,
    alert_on_failed_checks,
    retrain_on_drift,
)
from aq_assets.partitions import day_partitions
from aq_assets_tests.drift_scenario import Scenario

DRIFT_DAY = dt.date(2025, 6, 10)


@pytest.mark.slow(minutes=1.5)
def test_a_level_shift_fails_the_check_retrains_once_and_then_passes(tmp_path, instance):
    scenario = Scenario(tmp_path, f"level_shift@{DRIFT_DAY}", instance, max_rounds=150)
    scenario.start(DRIFT_DAY - dt.timedelta(days=1), history_days=75)

    outcomes = [scenario.day(DRIFT_DAY + dt.timedelta(days=i)) for i in (-1, 0, 1, 2)]

    before, *after = outcomes
    assert before.check_passed and before.champion_version == 1
    # Served forecasts scored against what happened, beside the baselines on the same rows.
    assert before.accuracy_passed
    assert before.report_url == f"http://127.0.0.1:8000/v1/reports/drift/{before.day}"
    assert before.accuracy["rmse_champion_h1"] < before.accuracy["rmse_persistence_h1"]
    assert before.accuracy["rmse_best_baseline_h24"] <= before.accuracy["rmse_persistence_h24"]
    # And how often the served intervals held the value, per horizon (the 80% inside the 90%).
    for h in (1, 24):
        assert 0.5 <= before.accuracy[f"coverage80_h{h}"] <= before.accuracy[f"coverage90_h{h}"]
    failed = [o for o in after[:2] if not o.check_passed]
    assert failed, "drift must fail the check on its first or second day"
    assert "log_ratio_to_pm10" in failed[0].drifted_features
    assert scenario.retrains == 1
    assert outcomes[-1].champion_version == 2
    assert all(o.check_passed for o in after if o.day > failed[0].day)


@asset(name="drift_report", partitions_def=day_partitions, config_schema={"detected": bool})
def _drift_report_stub(context) -> MaterializeResult:
    return MaterializeResult(
        metadata={"drift_detected": context.op_execution_context.op_config["detected"]}
    )


def drift_event(instance, day: str, detected: bool) -> None:
    run_config = {"ops": {"drift_report": {"config": {"detected": detected}}}}
    assert materialize(
        [_drift_report_stub], partition_key=day, instance=instance, run_config=run_config
    ).success


def tick(instance, cursor, cooldown_hours=12.0, retry_days=14):
    resources = {
        "retrain_policy": RetrainPolicy(cooldown_hours=cooldown_hours, retry_days=retry_days),
        "alerter": Alerter(),
    }
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return retrain_on_drift(context)


def test_the_sensor_requests_one_run_per_failed_evaluation_with_a_stable_run_key(instance):
    drift_event(instance, "2025-06-09", False)
    assert not tick(instance, None).run_requests

    drift_event(instance, "2025-06-10", True)
    first = tick(instance, None)
    again = tick(instance, None)  # the same evaluation seen again from the same cursor
    assert len(first.run_requests) == 1
    assert first.run_requests[0].run_key == again.run_requests[0].run_key
    assert first.run_requests[0].tags["aq/drift_day"] == "2025-06-10"
    assert not tick(instance, first.cursor).run_requests  # nothing new since


@asset(
    name="forecast_accuracy",
    partitions_def=day_partitions,
    config_schema={"lost": bool, "version": Field(int, default_value=1)},
)
def _forecast_accuracy_stub(context) -> MaterializeResult:
    config = context.op_execution_context.op_config
    return MaterializeResult(
        metadata={"accuracy_lost": config["lost"], "model_version": config["version"]}
    )


def accuracy_event(instance, day: str, lost: bool, version: int = 1) -> None:
    run_config = {"ops": {"forecast_accuracy": {"config": {"lost": lost, "version": version}}}}
    assert materialize(
        [_forecast_accuracy_stub], partition_key=day, instance=instance, run_config=run_config
    ).success


def test_sustained_accuracy_loss_also_asks_for_one_retraining(instance):
    accuracy_event(instance, "2025-06-09", False)
    drift_event(instance, "2025-06-09", False)
    quiet = tick(instance, None)
    assert not quiet.run_requests

    accuracy_event(instance, "2025-06-10", True)
    asked = tick(instance, quiet.cursor)
    (request,) = asked.run_requests
    assert request.tags["aq/trigger"] == "accuracy" and request.tags["aq/drift_day"] == "2025-06-10"
    assert request.run_key.startswith("accuracy-")
    assert request.tags["aq/champion_version"] == "1"
    assert not tick(instance, asked.cursor).run_requests


@asset(name="forecast_model")
def _forecast_model_stub() -> None:
    return None


def test_a_champion_retrained_on_an_alarm_asks_again_only_after_the_retry_days(instance):
    asked = {"aq/trigger": "accuracy", "aq/drift_day": "2025-06-10", "aq/champion_version": "3"}
    accuracy_event(instance, "2025-06-11", True, version=3)  # the same evidence and one day
    # A retraining asked for on 06-10 that judged no candidate (one that failed first): ask again.
    materialize([_noop], instance=instance, tags=asked)
    assert tick(instance, None, cooldown_hours=0).run_requests
    # One that judged a candidate (forecast_model materialized) and left champion 3 serving.
    materialize([_forecast_model_stub], instance=instance, tags=asked)
    held = tick(instance, None, cooldown_hours=0)
    assert not held.run_requests
    assert "ask again from 2025-06-24" in held.skip_reason.skip_message
    assert tick(instance, None, cooldown_hours=0, retry_days=0).run_requests  # the rule off

    accuracy_event(instance, "2025-06-12", True, version=4)  # a new champion's alarm is its own
    (new_champion,) = tick(instance, held.cursor, cooldown_hours=0).run_requests
    assert new_champion.tags["aq/champion_version"] == "4"

    accuracy_event(instance, "2025-06-24", True, version=3)
    (again,) = tick(instance, None, cooldown_hours=0).run_requests
    assert again.tags["aq/drift_day"] == "2025-06-24"


def test_the_cooldown_holds_back_a_second_retraining(instance):
    materialize([_noop], instance=instance, tags={"aq/trigger": "drift"})
    drift_event(instance, "2025-06-11", True)
    held = tick(instance, None, cooldown_hours=12)
    assert not held.run_requests and "cooldown" in held.skip_reason.skip_message
    assert len(tick(instance, None, cooldown_hours=0).run_requests) == 1


def test_the_schedule_reingests_the_last_two_days_for_every_sensor(instance):
    instance.add_dynamic_partitions("sensor", ["9001002", "9002002", "9003002"])
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=dt.datetime(2025, 6, 12, 0, 20, tzinfo=dt.UTC)
    )
    request = ingest_latest_days(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2025-06-10|9001002"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-06-11|9003002"
    assert request.run_key == "ingest-2025-06-10-2025-06-11"


def test_alerts_post_slack_json_to_the_webhook_or_log(webhook, caplog):
    url, received = webhook
    assert Alerter(webhook_url=url).send("aq: drift detected") is True
    assert received == [{"text": "aq: drift detected"}]
    assert Alerter().send("aq: run failed") is False
    assert "ALERT aq: run failed" in caplog.text
    assert Alerter(webhook_url="http://127.0.0.1:9/nothing", timeout_s=1).send("x") is False


@asset
def _noop() -> None:
    return None


@asset(
    partitions_def=day_partitions,
    config_schema={"passed": bool},
    check_specs=[AssetCheckSpec("in_range", asset="level")],
)
def level(context) -> MaterializeResult:
    passed = context.op_execution_context.op_config["passed"]
    return MaterializeResult(check_results=[AssetCheckResult(passed=passed)])


def alert_tick(instance, cursor, caplog):
    caplog.clear()
    defs = Definitions(assets=[level])
    with build_sensor_context(
        instance=instance, cursor=cursor, resources={"alerter": Alerter()}, definitions=defs
    ) as context:
        alert_on_failed_checks(context)
        alerts = [r.getMessage() for r in caplog.records if r.name == "aq.alerts"]
        return context.cursor, alerts


def test_each_failed_check_alerts_once_on_the_local_sqlite_instance(instance, caplog):
    def check_run(day: str, passed: bool) -> None:
        config = {"ops": {"level": {"config": {"passed": passed}}}}
        materialize([level], partition_key=day, instance=instance, run_config=config)

    check_run("2025-06-08", False)  # before the sensor starts: history, not alerted
    cursor, alerts = alert_tick(instance, None, caplog)
    assert alerts == []

    check_run("2025-06-09", True)
    check_run("2025-06-10", False)
    cursor, alerts = alert_tick(instance, cursor, caplog)
    assert len(alerts) == 1
    assert "in_range on level failed" in alerts[0] and "2025-06-10" in alerts[0]

    cursor, alerts = alert_tick(instance, cursor, caplog)
    assert alerts == []  # nothing new: nothing sent twice

    check_run("2025-06-11", False)
    check_run("2025-06-12", True)
    _, alerts = alert_tick(instance, cursor, caplog)
    assert len(alerts) == 1 and "2025-06-11" in alerts[0]


def test_a_new_day_moves_the_snapshot_and_predictions_whatever_days_are_missing(
    instance, warehouse
):
    # The calendar starts in 2025-01 and only the last two days are ingested: thousands of
    # raw_readings partitions stay missing, as after a fresh `aq up`.
    from dagster import AssetKey, evaluate_automation_conditions

    from aq_assets.definitions import defs
    from aq_assets.defs.ingest.assets import raw_readings, sensor_catalog
    from aq_assets.defs.predictions.assets import online_features
    from aq_assets.partitions import last_day
    from aq_assets_tests.conftest import StubSource, resources_for

    resources = resources_for(StubSource(), warehouse)
    assets = [sensor_catalog, raw_readings, online_features]
    assert materialize([sensor_catalog], instance=instance, resources=resources).success

    def ingest(day: dt.date) -> None:
        for sensor in ("1002", "1010", "2002"):
            assert materialize(
                assets,
                selection=[raw_readings],
                partition_key=f"{day}|{sensor}",
                instance=instance,
                resources=resources,
            ).success

    ingest(last_day() - dt.timedelta(days=1))
    assert materialize(
        assets, selection=[online_features], instance=instance, resources=resources
    ).success
    settled = evaluate_automation_conditions(defs=defs, instance=instance)
    settled = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
    assert settled.get_num_requested(AssetKey("online_features")) == 0

    ingest(last_day())
    moved = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
    assert moved.get_num_requested(AssetKey("online_features")) == 1
    # The new day's forecasts follow too (their champion is checked when they run).
    assert moved.get_num_requested(AssetKey("predictions")) == 1


def test_a_stuck_sensors_hours_are_left_out_of_the_service_snapshot(instance, warehouse):
    """As in training and scoring: the service forecasts a stuck sensor from its last
    trustworthy reading, not from a flat line."""
    from aq_assets.defs.ingest.assets import raw_readings, sensor_catalog
    from aq_assets.defs.predictions.assets import online_features
    from aq_assets.partitions import last_day
    from aq_assets_tests.conftest import StubSource, resources_for

    day = last_day()
    assets = [sensor_catalog, raw_readings, online_features]
    good = resources_for(StubSource(), warehouse)
    assert materialize([sensor_catalog], instance=instance, resources=good).success
    for sensor, source in (("1002", StubSource(mode="stuck")), ("2002", StubSource())):
        assert materialize(
            assets,
            selection=[raw_readings],
            partition_key=f"{day}|{sensor}",
            instance=instance,
            resources=resources_for(source, warehouse),
        ).success

    result = materialize(assets, selection=[online_features], instance=instance, resources=good)

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["quarantined_stuck_hours"].value == 24
    snapshot = pd.read_parquet(metadata["path"].value)
    pm25 = snapshot[snapshot["parameter"] == "pm25"]
    assert set(pm25["sensor_id"]) == {2002} and len(pm25) == 24
    assert (snapshot["sensor_id"] == 1010).sum() == 0  # 1010 (o3) was never ingested
