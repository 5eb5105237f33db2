"""training_set → forecast_model → champion_model, in-process, with DuckDB and an MLflow
sqlite store under tmp_path: promotion, the gate refusing a worse model, failed runs."""

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from aq_assets.cli import training_report
from aq_assets.defs.ingest.assets import raw_readings, sensor_catalog
from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.simulated import SimulatedSource
from aq_assets.defs.model.assets import champion_model, forecast_model
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.training.assets import training_set
from aq_assets.defs.training.lineage import partitions_summary
from aq_assets.ml.evaluation import MIN_TRAINING_DAYS
from aq_assets.ml.model import Forecaster
from aq_assets.ml.model import train_forecaster as real_train_forecaster
from aq_assets.partitions import reading_partitions
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import DuckDBWarehouse, Warehouse, partition_rows, warehouse_resources

DAYS = 50
FAST = {"max_rounds": 300}
CHAIN = [sensor_catalog, raw_readings, training_set, forecast_model, champion_model]


@pytest.fixture(scope="module")
def readings_home(tmp_path_factory):
    """A warehouse holding 50 simulated days of 20 sensors, written once for the module."""
    home = tmp_path_factory.mktemp("aq")
    source = SimulatedSource()
    catalog = source.list_sensors()
    days = [dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(DAYS)]
    from aq_assets.defs.ingest.catalog import sensors_by_id

    sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
    collected = collect_readings(
        source, [(s, d) for d in days for s in sensors.values()], pd.Timestamp("2025-05-01")
    )
    keys = [f"{d}|{s}" for d in days for s in sensors]
    rows, mapping = partition_rows(
        reading_partitions, keys, {"day": "datetime_utc", "sensor": "sensor_id"}
    )
    DuckDBWarehouse(aq_home=str(home)).replace(
        "ingest", "raw_readings", collected.readings, rows, mapping
    )
    return home


@pytest.fixture
def resources(readings_home, tmp_path):
    warehouse = DuckDBWarehouse(aq_home=str(readings_home))
    return {
        "source": SimulatedSource(),
        "forecast_target": ForecastTarget(),
        **warehouse_resources(warehouse.aq_home),
        "mlflow_tracking": MLflowTracking(aq_home=str(tmp_path / "mlflow-home")),
    }


def train(instance, resources, model_config=None, raise_on_error=True, selection=None):
    return materialize(
        CHAIN,
        selection=selection or [training_set, forecast_model, champion_model],
        instance=instance,
        resources=resources,
        run_config={"ops": {"forecast_model": {"config": model_config or FAST}}},
        raise_on_error=raise_on_error,
    )


def metadata_of(result, asset: str) -> dict:
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)
    ]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


class BiasedForecaster(Forecaster):
    """A deliberately worse model: every forecast 8 µg/m³ too high."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return super().predict(frame) + 8.0


def train_biased(*args, **kwargs) -> Forecaster:
    trained = real_train_forecaster(*args, **kwargs)
    return BiasedForecaster(**vars(trained))


def test_a_model_is_tracked_registered_and_promoted_then_a_worse_one_is_refused(
    instance, resources, monkeypatch
):
    tracking: MLflowTracking = resources["mlflow_tracking"]
    assert materialize([sensor_catalog], instance=instance, resources=resources).success
    # The first model learns up to 2025-04-09 (as if AQ_END_DATE were 2025-04-10), so the
    # second, on all 50 days, can judge it on the ten held-out days it never saw.
    monkeypatch.setattr("aq_assets.defs.training.assets.last_day", lambda: dt.date(2025, 4, 9))
    first = train(instance, resources)
    monkeypatch.undo()

    assert first.success
    model = metadata_of(first, "forecast_model")
    data = metadata_of(first, "training_set")
    assert model["model_version"] == 1 and tracking.champion_version() == 1
    assert metadata_of(first, "champion_model")["promoted"] is True
    assert all(model[f"rmse_h{h}"] > 0 for h in (1, 3, 6, 12, 24))
    assert "RMSE persistence" in model["evaluation"] and "RMSE climatology" in model["evaluation"]
    assert model["mlflow_run"].endswith(f"/runs/{model['mlflow_run_id']}")
    gate = {e.check_name: e for e in first.get_asset_check_evaluations()}[
        "beats_baselines_and_champion"
    ]
    assert (
        gate.passed
        and gate.metadata["rmse_model_h1"].value < gate.metadata["rmse_best_baseline_h1"].value
    )
    assert data["last_hour_utc"] == "2025-04-09 23:00:00"
    assert tracking.version_tags(1)["aq.trained_until"] == "2025-04-09 23:00:00"
    assert model["model_kind"] == "trained"

    run = tracking.client().get_run(model["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_run_id"] == first.run_id
    assert (
        run.data.tags["training_set_fingerprint"]
        == data["fingerprint"]
        == model["training_set_fingerprint"]
    )
    assert run.data.metrics["rmse_h1"] == pytest.approx(model["rmse_h1"])
    assert "rmse_persistence_h24" in run.data.metrics and "skill_h6" in run.data.metrics
    assert "backtest_skill_vs_best_h24" in run.data.metrics
    backtest_table = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/backtest.md")
    assert "pooled" in backtest_table and "skill_vs_best" in backtest_table
    assert run.inputs.dataset_inputs[0].dataset.digest == data["fingerprint"]
    lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/training_set/partitions.json")
    assert lineage["sensors"] == sorted(lineage["sensors"]) and len(lineage["sensors"]) == 5
    assert lineage["last_day"] == "2025-04-09"
    assert tracking.version_tags(1)["aq.gate"] == "passed"
    # The version's drift reference: its whole window (40 days of 5 pm25 sensors, fewer than
    # the sample size), a limit per judged column, its held-out error.
    reference = tracking.drift_reference(1)
    assert 40 * 5 * 24 * 0.8 < len(reference.rows) <= 40 * 5 * 24
    assert {"cv_24", "log_ratio_to_pm10", "log_ratio_to_network"} <= set(reference.thresholds)
    assert all(limit > 0 for limit in reference.thresholds.values())
    assert 0 < reference.error == run.data.metrics["drift_reference_error_h1"] < 1

    monkeypatch.setattr("aq_assets.ml.evaluation.train_forecaster", train_biased)
    second = train(instance, resources, raise_on_error=False)

    assert not second.success
    gate = {e.check_name: e for e in second.get_asset_check_evaluations()}[
        "beats_baselines_and_champion"
    ]
    assert not gate.passed
    assert gate.metadata["compared_with_champion_version"].value == 1
    assert gate.metadata["champion_scored_rows"].value <= 10 * 5 * 24  # its unseen days only
    assert "worse than the champion" in gate.metadata["reasons"].value
    assert "worse than the best baseline" in gate.metadata["reasons"].value
    # What `aq train` prints: the gate's reasons last, a refusal (exit code 3), not a failure.
    report = training_report(second)
    assert report.refused and report.failure is None
    assert report.lines[-1].startswith("beats_baselines_and_champion failed: ")
    assert "worse than the champion" in report.lines[-1]
    promoted = training_report(first)
    assert promoted.has_champion and not promoted.refused and promoted.failure is None
    assert tracking.champion_version() == 1
    assert tracking.version_tags(2)["aq.gate"] == "failed"
    # The refused version keeps its own reference; the champion's is untouched.
    kept_reference = tracking.drift_reference(1)
    assert kept_reference.rows.equals(reference.rows)
    assert kept_reference.thresholds == reference.thresholds
    assert not [
        e
        for e in second.get_asset_materialization_events()
        if e.asset_key == AssetKey("champion_model")
    ]

    # Asked directly, champion_model keeps version 1 and says why.
    kept = materialize(CHAIN, selection=[champion_model], instance=instance, resources=resources)
    decision = metadata_of(kept, "champion_model")
    assert decision["champion_version"] == 1 and decision["promoted"] is False
    assert "version 2 failed the gate" in decision["decision"]
    assert tracking.champion_version() == 1


def test_a_refused_first_model_leaves_a_baseline_champion(instance, resources, monkeypatch):
    """With no champion yet, a refused model still leaves something to serve: the best
    baseline per horizon, registered, tagged and promoted, and the gate says why."""
    tracking: MLflowTracking = resources["mlflow_tracking"]
    assert materialize([sensor_catalog], instance=instance, resources=resources).success
    monkeypatch.setattr("aq_assets.ml.evaluation.train_forecaster", train_biased)

    result = train(instance, resources)

    model = metadata_of(result, "forecast_model")
    gate = {e.check_name: e for e in result.get_asset_check_evaluations()}[
        "beats_baselines_and_champion"
    ]
    assert gate.passed and "BASELINE forecaster" in gate.metadata["reasons"].value
    assert "worse than the best baseline" in gate.metadata["reasons"].value
    assert model["model_kind"] == "baseline"
    assert tracking.champion_version() == model["model_version"] == 1
    assert tracking.version_tags(1)["aq.kind"] == "baseline"
    decision = metadata_of(result, "champion_model")
    assert decision["champion_kind"] == "baseline"
    assert "a BASELINE forecaster" in decision["decision"]
    served = tracking.load_forecaster(1)
    assert served.is_baseline
    assert all(set(served.blend_weights[h]) <= {"climatology"} for h in (1, 3, 6, 12, 24))


def test_the_registered_model_serves_the_same_numbers_as_the_forecaster(instance, resources):
    tracking: MLflowTracking = resources["mlflow_tracking"]
    assert materialize([sensor_catalog], instance=instance, resources=resources).success
    assert train(instance, resources).success

    frame = resources["warehouse"].query(
        "SELECT * FROM training.training_set WHERE level IS NOT NULL LIMIT 50"
    )
    forecaster = tracking.load_forecaster(1)
    tracking.client()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{tracking.model_name}@champion")
    expected = forecaster.predict(frame)
    served = pyfunc.predict(frame[["sensor_id", "datetime_utc", *forecaster.spec.feature_columns]])
    pd.testing.assert_frame_equal(served.reset_index(drop=True), expected.reset_index(drop=True))


def test_a_window_too_short_to_train_on_is_refused_and_the_stored_set_kept(instance, resources):
    assert materialize([sensor_catalog], instance=instance, resources=resources).success
    built = materialize(CHAIN, selection=[training_set], instance=instance, resources=resources)
    stored = "SELECT count(*) AS n, max(datetime_utc) AS last FROM training.training_set"
    before = resources["warehouse"].query(stored)

    result = materialize(
        CHAIN,
        selection=[training_set],
        instance=instance,
        resources=resources,
        run_config={"ops": {"training_set": {"config": {"window_days": MIN_TRAINING_DAYS - 1}}}},
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    said = failure.user_failure_data.description
    assert (
        f"window_days={MIN_TRAINING_DAYS - 1}" in said and f"at least {MIN_TRAINING_DAYS}" in said
    )
    pd.testing.assert_frame_equal(resources["warehouse"].query(stored), before)
    assert before["n"].iloc[0] == metadata_of(built, "training_set")["dagster/row_count"]


def test_a_failed_training_ends_its_mlflow_run_as_failed(instance, resources, monkeypatch):
    tracking: MLflowTracking = resources["mlflow_tracking"]
    assert materialize([sensor_catalog], instance=instance, resources=resources).success

    def no_rows(*args, **kwargs):
        raise ValueError("No rows with a level and a 1 h target in a split; widen the window.")

    monkeypatch.setattr("aq_assets.ml.evaluation.train_forecaster", no_rows)
    result = train(instance, resources, raise_on_error=False)

    assert not result.success
    runs = tracking.client().search_runs(
        [tracking.client().get_experiment_by_name(tracking.experiment).experiment_id]
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["dagster_run_id"] == result.run_id
    assert tracking.champion_version() is None


def test_predictions_replace_their_day_and_match_the_shared_forecast_path(instance, resources):
    from aq_assets.defs.predictions.assets import online_features, predictions
    from aq_assets.ml.forecasting import latest_forecasts

    assert materialize([sensor_catalog], instance=instance, resources=resources).success
    assert train(instance, resources).success
    day = "2025-04-15"
    assets = [*CHAIN, predictions, online_features]
    for _ in range(2):
        result = materialize(
            assets,
            selection=[predictions],
            partition_key=day,
            instance=instance,
            resources=resources,
        )
        assert result.success

    warehouse: Warehouse = resources["warehouse"]
    stored = warehouse.query("SELECT * FROM predictions.predictions")
    assert len(stored) == 5 * 24 * 5  # pm25 sensors × hours × horizons, once despite two runs
    assert set(stored["model_version"]) == {1}
    assert stored["forecast_for_utc"].dt.date.astype(str).eq(day).all()
    assert stored["actual"].notna().mean() > 0.9

    # The batch forecast for 12:00 from 09:00 equals the shared path's forecast at origin 09:00.
    origin = pd.Timestamp(f"{day} 09:00")
    forecaster = resources["mlflow_tracking"].load_forecaster(1)
    readings = warehouse.query(
        "SELECT * FROM ingest.raw_readings WHERE datetime_utc > ? AND datetime_utc <= ?",
        [
            (origin - pd.Timedelta(hours=forecaster.spec.history_hours)).to_pydatetime(),
            origin.to_pydatetime(),
        ],
    )
    catalog = warehouse.query("SELECT location_id, timezone FROM ingest.sensor_catalog")
    shared = latest_forecasts(
        forecaster,
        readings,
        dict(zip(catalog.location_id, catalog.timezone, strict=True)),
        origin=origin,
        thresholds=(15.0, 35.4),  # AQ_THRESHOLDS' defaults for pm25
    )
    batch = stored[stored["origin_utc"] == origin]
    both = batch.merge(
        shared, on=["sensor_id", "horizon", "forecast_for_utc"], suffixes=("_batch", "_shared")
    )
    assert len(both) == len(batch) == 5 * 4  # from 09:00 the 24 h forecast belongs to the next day
    for column in ["forecast", "q05", "q10", "q50", "q90", "q95", "p_above_15", "p_above_35_4"]:
        assert both[f"{column}_batch"].to_numpy() == pytest.approx(
            both[f"{column}_shared"].to_numpy(), rel=1e-6
        ), column
    assert (both["category_batch"] == both["category_shared"]).all()
    quantiles = stored[["q05", "q10", "q50", "q90", "q95"]].to_numpy()
    assert (np.diff(quantiles, axis=1) >= 0).all()  # ordered, the interval around the median
    assert set(stored["category"]) <= {"Good", "Moderate", "Unhealthy for Sensitive Groups"}
    assert (stored["p_above_35_4"] <= stored["p_above_15"]).all()

    snapshot = materialize(
        assets, selection=[online_features], instance=instance, resources=resources
    )
    assert snapshot.success
    path = metadata_of(snapshot, "online_features")["path"]
    frame = pd.read_parquet(path)
    assert list(frame.columns) == [
        "sensor_id",
        "location_id",
        "parameter",
        "units",
        "datetime_utc",
        "value",
        "timezone",
        "location_name",
    ]
    assert frame["datetime_utc"].max() - frame["datetime_utc"].min() < pd.Timedelta(
        hours=forecaster.spec.history_hours + 24
    )
    assert set(frame["timezone"]) >= {"-06:00", "+05:30"}
    catalog = warehouse.query("SELECT location_id, location_name FROM ingest.sensor_catalog")
    names = dict(zip(catalog["location_id"], catalog["location_name"], strict=False))
    assert frame["location_name"].notna().all()
    assert (frame["location_name"] == frame["location_id"].map(names)).all()


def test_the_lineage_tag_stays_short_at_a_countrys_scale():
    """MLflow refuses tags over 500 characters: 1,000 six-digit sensor ids are 7,000."""
    sensors = list(range(100_000, 101_000))
    summary = partitions_summary(dt.date(2025, 1, 1), dt.date(2025, 12, 31), sensors)
    other = partitions_summary(dt.date(2025, 1, 1), dt.date(2025, 12, 31), [*sensors[:-1], 999_999])

    assert len(summary) < 200 and "1000 sensors 100000..100999" in summary
    assert summary != other  # the digest tells two lists apart
    assert partitions_summary(dt.date(2025, 1, 1), dt.date(2025, 1, 2), [7, 9]) == (
        "day 2025-01-01..2025-01-02 × sensors 7,9"
    )


@pytest.mark.parametrize("stock", [False, True], ids=["aq", "stock eager"])
def test_a_model_that_failed_on_its_training_set_waits_for_a_new_one(stock):
    """Stock `eager()` runs a model again at once on the rows it just failed on (after a
    manual run that built the set and failed to train): one more failure, one more alert."""
    from dagster import AutomationCondition, Definitions, asset, evaluate_automation_conditions

    from aq_assets.defs.model.assets import RETRAINS_ON_A_NEW_TRAINING_SET

    fails = {"now": True}

    @asset(name="training_set")
    def rows() -> int:
        return 1

    @asset(
        name="forecast_model",
        deps=[rows],
        automation_condition=(
            AutomationCondition.eager() if stock else RETRAINS_ON_A_NEW_TRAINING_SET
        ),
    )
    def model() -> None:
        if fails["now"]:
            raise ValueError("too few days")

    defs = Definitions(assets=[rows, model])
    key = AssetKey("forecast_model")
    with DagsterInstance.ephemeral() as instance:
        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
        assert not materialize([rows, model], instance=instance, raise_on_error=False).success

        after_failure = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)

        assert after_failure.get_num_requested(key) == (1 if stock else 0)
        if stock:
            return
        fails["now"] = False
        assert materialize([rows], instance=instance).success
        new_set = evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=after_failure.cursor
        )
        assert new_set.get_num_requested(key) == 1
