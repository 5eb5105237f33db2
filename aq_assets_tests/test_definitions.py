"""The code location loads, stays light, and has the assets and checks users rely on."""

import json
import subprocess
import sys

from dagster import AssetKey, MultiPartitionsDefinition

from aq_assets.definitions import defs


def test_assets_have_bare_keys_partitions_and_checks():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "sensor_catalog",
        "raw_readings",
        "training_set",
        "forecast_model",
        "champion_model",
        "predictions",
        "online_features",
        "drift_report",
        "forecast_accuracy",
    }
    raw = graph.get(AssetKey("raw_readings"))
    assert isinstance(raw.partitions_def, MultiPartitionsDefinition)
    assert [d.name for d in raw.partitions_def.partitions_defs] == ["day", "sensor"]
    assert raw.parent_keys == {AssetKey("sensor_catalog")}
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey("raw_readings")}
    assert checks == {
        "schema_matches",
        "values_in_plausible_range",
        "no_duplicate_readings",
        "timestamps_inside_partition",
        "hourly_coverage",
        "no_stuck_sensor",
        "no_malformed_rows",
    }
    assert {j.name for j in defs.jobs} >= {"ingest_job", "catalog_job", "train_job"}
    gate = next(k for k in graph.asset_check_keys if k.asset_key == AssetKey("forecast_model"))
    assert graph.get_check_spec(gate).blocking
    drift = next(k for k in graph.asset_check_keys if k.asset_key == AssetKey("drift_report"))
    assert drift.name == "no_significant_drift" and not graph.get_check_spec(drift).blocking
    running = {s.name for s in defs.sensors if s.default_status.value == "RUNNING"}
    assert running >= {
        "aq_automation",
        "retrain_on_drift",
        "alert_on_run_failure",
        "alert_on_failed_checks",
    }
    assert {s.name for s in defs.schedules if s.default_status.value == "RUNNING"} == {
        "ingest_latest_days",
        "discover_sensors_weekly",
    }


def test_loading_the_code_location_imports_no_heavy_library():
    probe = (
        "import sys, json, aq_assets.definitions as d; d.defs.get_repository_def(); "
        "print(json.dumps([m for m in ('mlflow', 'evidently', 'xgboost', 'sklearn', 'numba') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
