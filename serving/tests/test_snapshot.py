"""The snapshot's histories (`readings_history`: the service's cleaning and co-located
parameters) give the rows `build_features` gives at the same origin, on random messy
histories, and clean every sensor as `clean_readings` does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aq_assets.ml import features
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.features import FeatureSpec
from aq_assets_tests.messy import (
    LOCATION,
    SMALL_SPEC,
    assert_same_features,
    batch_row,
    epoch_hours,
    random_histories,
)
from serving.tests.conftest import history_of


def online_row(
    readings: pd.DataFrame,
    spec: FeatureSpec,
    sensor_id: int,
    origin: pd.Timestamp,
    timezone: str | None,
) -> np.ndarray | None:
    sensor = history_of(readings, {LOCATION: timezone}).sensors[sensor_id]
    return features.origin_features(spec, sensor, epoch_hours(origin))


@pytest.mark.slow(minutes=1)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_the_origin_row_matches_build_features_on_random_histories(data, spec):
    readings, target, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    history = history_of(readings)
    sensor = history.sensors.get(target)
    if sensor is None or not len(sensor.target):  # no reading, or cleaning dropped them all
        hourly, _ = clean_readings(readings)
        assert target not in set(hourly["sensor_id"])
        return

    expected = batch_row(readings, spec, target, origin, timezones)
    got = online_row(readings, spec, target, origin, timezones[LOCATION])

    scale = float(np.abs(sensor.target.values).max())
    assert_same_features(expected, got, spec, scale)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cleaning_matches_clean_readings_value_for_value(data):
    """readings_history cleans every sensor in one pass (clean_many): each as pandas does."""
    readings, _, _, _ = data.draw(random_histories(FeatureSpec(), (1,)))

    hourly, _ = clean_readings(readings)
    history = history_of(readings)

    kept = {sensor for sensor, h in history.sensors.items() if len(h.target)}
    assert kept == set(hourly["sensor_id"])
    for sensor_id, rows in hourly.groupby("sensor_id"):
        series = history.sensors[sensor_id].target
        np.testing.assert_array_equal(
            series.hours,
            rows["datetime_utc"].to_numpy().astype("datetime64[h]").astype(np.int64),
        )
        np.testing.assert_array_equal(series.values, rows["value"].to_numpy())
