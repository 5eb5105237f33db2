"""The code location loads, stays light, and has the assets and checks users rely on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

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


# The graph as reviewers should see it change: every asset's spec, one line of JSON each.
ASSET_GRAPH = Path(__file__).with_name("asset_graph.json")


def asset_graph_spec() -> dict[str, dict[str, object]]:
    """Key → group, kinds, partitions, dependencies (with their partition mappings), checks,
    automation condition, freshness policy, backfill policy, pools and IO manager."""
    graph = defs.resolve_asset_graph()
    out: dict[str, dict[str, object]] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        checks = sorted(c for c in graph.asset_check_keys if c.asset_key == key)
        out[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": partitions_spec(node.partitions_def),
            "deps": {
                parent.to_user_string(): type(node.partition_mappings[parent]).__name__
                if parent in node.partition_mappings
                else None
                for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string())
            },
            "checks": {
                c.name: "blocking" if graph.get_check_spec(c).blocking else "non-blocking"
                for c in checks
            },
            "automation_condition": repr(node.automation_condition)
            if node.automation_condition
            else None,
            "freshness_policy": repr(node.freshness_policy) if node.freshness_policy else None,
            "backfill_policy": repr(node.backfill_policy) if node.backfill_policy else None,
            "pools": sorted(node.pools or ()),
            "io_manager": node.io_manager_key,
        }
    return out


def partitions_spec(partitions: PartitionsDefinition | None) -> object:
    """What a partitioning is, without its start day (AQ_START_DATE moves it)."""
    if partitions is None:
        return None
    if isinstance(partitions, MultiPartitionsDefinition):
        return {d.name: partitions_spec(d.partitions_def) for d in partitions.partitions_defs}
    if isinstance(partitions, TimeWindowPartitionsDefinition):
        return f"time window {partitions.cron_schedule} {partitions.timezone}"
    if isinstance(partitions, DynamicPartitionsDefinition):
        return f"dynamic {partitions.name}"
    return repr(partitions)


def test_every_asset_spec_is_as_reviewed():
    """A change to the graph (a dependency, a check, an automation condition, ...) changes
    `asset_graph.json`, so it shows in review. After a deliberate change, rewrite it with
    `AQ_WRITE_ASSET_GRAPH=1 .venv/bin/pytest aq_assets_tests/test_definitions.py`."""
    current = asset_graph_spec()
    text = json.dumps(current, indent=1, ensure_ascii=False) + "\n"
    if os.environ.get("AQ_WRITE_ASSET_GRAPH") == "1":
        ASSET_GRAPH.write_text(text)
    reviewed = json.loads(ASSET_GRAPH.read_text())

    changed = sorted(
        k for k in current.keys() | reviewed.keys() if current.get(k) != reviewed.get(k)
    )
    assert not changed, (
        f"the asset graph differs from aq_assets_tests/asset_graph.json at {changed}; if that "
        "is intended, rewrite it: AQ_WRITE_ASSET_GRAPH=1 .venv/bin/pytest "
        "aq_assets_tests/test_definitions.py"
    )


def load_sensor_intervals(interval: str) -> subprocess.CompletedProcess[str]:
    """The code location loaded in a new process with AQ_SENSOR_INTERVAL_SECONDS set."""
    probe = (
        "import json, aq_assets.definitions as d; "
        "print(json.dumps({s.name: s.minimum_interval_seconds for s in d.defs.sensors}))"
    )
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe],
        env={**os.environ, "AQ_SENSOR_INTERVAL_SECONDS": interval},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_sensor_interval_setting_reaches_every_loop_sensor_and_a_bad_one_says_what_to_set():
    done = load_sensor_intervals("7")
    assert done.returncode == 0, done.stderr
    intervals = json.loads(done.stdout.strip().splitlines()[-1])
    loop = {"aq_automation", "retrain_on_drift", "alert_on_failed_checks"}
    assert loop <= set(intervals)
    assert {intervals[name] for name in loop} == {7}

    refused = load_sensor_intervals("half a minute")
    assert refused.returncode != 0
    assert "AQ_SENSOR_INTERVAL_SECONDS='half a minute'" in refused.stderr
    assert "whole number of seconds" in refused.stderr


@pytest.mark.parametrize(
    ("raw", "minimum", "options", "value"),
    [
        ("12", 0, {}, 12.0),
        ("0", 0, {}, 0.0),
        ("0.001", 0.01, {}, None),
        ("-1", 0, {}, None),
        ("abc", 0, {}, None),
        ("inf", 0, {}, None),
        ("nan", 0, {}, None),
        ("1e400", 0, {}, None),
        ("12000", 1, {"whole": True}, 12000.0),
        ("12000.9", 1, {"whole": True}, None),
    ],
)
def test_a_number_setting_is_finite_within_its_bound_or_named_with_the_fix(
    monkeypatch, raw, minimum, options, value
):
    from aq_assets.settings import SettingError, env_number

    monkeypatch.setenv("AQ_SOME_NUMBER", raw)
    if value is not None:
        assert env_number("AQ_SOME_NUMBER", "5", minimum, **options) == value
        return
    with pytest.raises(SettingError, match=r"AQ_SOME_NUMBER='.*' is not a .* unset it"):
        env_number("AQ_SOME_NUMBER", "5", minimum, **options)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("2025-01-31", True), (" 2025-01-31 ", True), ("2025-13-01", False), ("20250131", False)],
)
def test_a_date_setting_is_a_day_written_yyyy_mm_dd(monkeypatch, raw, ok):
    from aq_assets.settings import SettingError, env_date

    monkeypatch.setenv("AQ_SOME_DAY", raw)
    if ok:
        assert env_date("AQ_SOME_DAY") == raw.strip()
    else:
        with pytest.raises(
            SettingError, match=r"AQ_SOME_DAY=.* is not a day; set it as YYYY-MM-DD"
        ):
            env_date("AQ_SOME_DAY")
