"""The service's forecaster (`OnlineForecaster`: compiled trees or XGBoost, the blend)
predicts what `Forecaster.predict` does, and the service's path (snapshot history, one
origin's row, no pandas) forecasts what the batch path (`latest_forecasts`) does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aq_assets.ml import features
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.features import build_features
from aq_assets.ml.model import Forecaster, baseline_forecaster
from aq_assets_tests.messy import epoch_hours, random_histories
from serving.champion import OnlineForecaster
from serving.tests.conftest import Store, expected_forecasts, history_of, snapshot_readings
from serving.trees import TreeEnsemble


def online_forecasts(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str],
    origin: pd.Timestamp | None = None,
) -> dict[int, list[float]]:
    """sensor → forecasts by horizon, as the service computes them."""
    model = OnlineForecaster(forecaster)
    out = {}
    for sensor_id, sensor in history_of(readings, timezones).sensors.items():  # type: ignore[arg-type]
        if sensor.parameter != forecaster.spec.parameter or not len(sensor.target):
            continue
        at = epoch_hours(origin) if origin is not None else int(sensor.target.hours[-1])
        row = features.origin_features(forecaster.spec, sensor, at)
        if row is not None:
            out[sensor_id] = model.predict(row[None, :], [sensor_id], [at])[0].tolist()
    return out


def assert_same_forecasts(expected: dict[int, list[float]], got: dict[int, list[float]]):
    assert sorted(got) == sorted(expected)
    for sensor in expected:
        np.testing.assert_allclose(got[sensor], expected[sensor], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def frame(store: Store) -> pd.DataFrame:
    """Feature rows of the readings the store's models were trained on."""
    hourly, _ = clean_readings(store.readings)
    return build_features(hourly, store.spec, store.timezones)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def forecaster(store: Store) -> Forecaster:
    return store.forecasters["1"]


def test_the_compiled_trees_predict_exactly_what_the_boosters_do(forecaster, frame):
    model = OnlineForecaster(forecaster)
    rows = frame.sample(500, random_state=1)[forecaster.spec.feature_columns]
    values = rows.to_numpy(dtype=np.float32)

    assert model.compiled, model.compiled_error
    got = model._changes(values)
    for j, h in enumerate(model.horizons):
        np.testing.assert_array_equal(got[:, j], forecaster.boosters[h].inplace_predict(values))


def test_a_baseline_forecaster_serves_what_forecaster_predict_does(forecaster, frame):
    """A baseline champion (no boosters) goes through the same blend online and in batch."""
    rows = frame.sample(300, random_state=2)
    choice = {h: "climatology" if h >= 12 else "persistence" for h in forecaster.spec.horizons}
    baseline = baseline_forecaster(rows, forecaster.spec, choice)
    model = OnlineForecaster(baseline)

    got = model.predict(
        rows[forecaster.spec.feature_columns].to_numpy(dtype="float64"),
        rows["sensor_id"].tolist(),
        [epoch_hours(t) for t in rows["datetime_utc"]],
    )

    assert model.is_baseline
    np.testing.assert_array_equal(got, baseline.predict(rows).to_numpy())
    np.testing.assert_array_equal(got[:, 0], rows["level"].to_numpy())  # 1 h: persistence


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "xgboost"])
def test_online_forecaster_predicts_what_forecaster_predict_does(
    forecaster, frame, compiled, monkeypatch
):
    if not compiled:

        def refuse(boosters):
            raise ValueError("a layout the compiled trees do not know")

        monkeypatch.setattr(TreeEnsemble, "from_boosters", refuse)
    rows = frame.sample(500, random_state=0)
    model = OnlineForecaster(forecaster)

    got = model.predict(
        rows[forecaster.spec.feature_columns].to_numpy(dtype="float64"),
        rows["sensor_id"].tolist(),
        [epoch_hours(t) for t in rows["datetime_utc"]],
    )

    assert model.compiled is compiled
    if not compiled:
        assert model.compiled_error == "ValueError: a layout the compiled trees do not know"
    assert any(w for w in forecaster.blend_weights.values())  # the blend is used
    np.testing.assert_array_equal(got, forecaster.predict(rows).to_numpy())


@pytest.mark.parametrize(
    "origin_from_ends",
    [
        lambda first, last: None,  # each sensor's last reading
        lambda first, last: last - pd.Timedelta(hours=47),
        lambda first, last: last + pd.Timedelta(hours=2),  # after the last reading
        lambda first, last: last + pd.Timedelta(hours=9),  # no level any more
        lambda first, last: first + pd.Timedelta(hours=89),  # profiles, long windows partial
    ],
    ids=["latest", "two-days-back", "after-the-last", "no-level", "little-history"],
)
def test_online_forecasts_equal_latest_forecasts_on_simulated_readings(
    forecaster, store, origin_from_ends
):
    times = store.readings["datetime_utc"]
    origin = origin_from_ends(times.min().floor("h"), times.max().floor("h"))

    assert_same_forecasts(
        expected_forecasts(forecaster, store.readings, store.timezones, origin),
        online_forecasts(forecaster, store.readings, store.timezones, origin),
    )


def test_online_forecasts_equal_latest_forecasts_on_the_snapshot(forecaster, store):
    recent = snapshot_readings(store).drop(columns="timezone")

    assert_same_forecasts(
        expected_forecasts(forecaster, recent, store.timezones),
        online_forecasts(forecaster, recent, store.timezones),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_online_forecasts_equal_latest_forecasts_on_random_histories(data, forecaster):
    spec = forecaster.spec
    readings, _, origin, timezones = data.draw(
        random_histories(spec, (spec.sensors[0], spec.sensors[2], 4242))  # 4242: unknown
    )
    readings = readings[readings["sensor_id"] != 7]  # one target sensor per location here

    expected = expected_forecasts(forecaster, readings, timezones, origin)
    got = online_forecasts(forecaster, readings, timezones, origin)

    assert_same_forecasts(expected, got)
