"""`aq_assets.ml.features`: features without leakage, gaps kept, the origin row as in training, local calendars, the spec."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aq_assets.ml import features
from aq_assets.ml.cleaning import HourlySeries, clean_readings
from aq_assets.ml.features import PROFILE_DAYS, RELATIVE_COLUMNS, FeatureSpec, build_features
from aq_assets_tests import oracle
from aq_assets_tests.hourly import START, at, diurnal, location_series, readings
from aq_assets_tests.messy import SMALL_SPEC, assert_same_columns, epoch_hours, random_histories

# ---------------------------------------------------------------------------------------------
# build_features

LEAKAGE_SPEC = FeatureSpec(horizons=(1, 3, 24)).with_sensors([1, 2])


@pytest.mark.parametrize("hours_in", [30, 130, 200])
def test_features_at_t_do_not_depend_on_anything_after_t(hours_in):
    t = START + pd.Timedelta(hours=hours_in)
    hourly = location_series(240)
    # Gaps reaching t in sensor 1 and in pm10: a fill from the next reading would leak.
    gap = hourly["sensor_id"].isin([1, 3]) & hourly["datetime_utc"].between(
        t - pd.Timedelta(hours=1), t
    )
    hourly = hourly[~gap].reset_index(drop=True)
    later = hourly["datetime_utc"] > t
    assert set(hourly.loc[later, "parameter"]) == {"pm25", "pm10"}
    wild = hourly.copy()
    wild.loc[later, "value"] = 5000 + np.random.default_rng(1).uniform(0, 1000, later.sum())

    base = build_features(hourly, LEAKAGE_SPEC)
    changed = build_features(wild, LEAKAGE_SPEC)

    columns = LEAKAGE_SPEC.feature_columns
    upto = base["datetime_utc"] <= t
    assert upto.sum() == 2 * (hours_in + 1)
    assert base[["sensor_id", "datetime_utc"]].equals(changed[["sensor_id", "datetime_utc"]])
    # A feature column that is never defined could not reveal anything.
    assert base.loc[upto, ["level", "pm10_now", "mean_24", "same_hour_7d_h3"]].notna().any().all()
    pd.testing.assert_frame_equal(base.loc[upto, columns], changed.loc[upto, columns])
    # ...while the targets at t do see the change, so the comparison above can fail.
    for sensor_id in (1, 2):
        for target in LEAKAGE_SPEC.target_columns:
            before, after = at(base, sensor_id, t)[target], at(changed, sensor_id, t)[target]
            assert after >= 5000 > before, (sensor_id, target)


def test_a_missing_hour_stays_missing():
    spec = FeatureSpec(horizons=(1, 3), max_fill_hours=3).with_sensors([1])
    values = diurnal(48, 30, 10, 1, seed=3)
    values[20] = np.nan  # one hour missing
    values[30:36] = np.nan  # six hours missing, longer than max_fill_hours
    raw = readings(values)
    hourly = raw.dropna(subset=["value"])

    frame = build_features(hourly, spec)

    assert frame["datetime_utc"].tolist() == raw["datetime_utc"].tolist()
    np.testing.assert_array_equal(frame["y"].to_numpy(), values)
    for h in spec.horizons:
        expected_target = np.append(values[h:], [np.nan] * h)
        np.testing.assert_array_equal(frame[f"target_h{h}"].to_numpy(), expected_target)
        assert np.isnan(frame.loc[20 - h, f"target_h{h}"])
    assert np.isnan(frame.loc[21, "lag_1"])
    # The level carries the last reading for at most max_fill_hours, then is unknown.
    last = values[29]
    assert frame.loc[30:32, "level"].tolist() == [last] * 3
    assert frame.loc[30:32, "hours_since_reading"].tolist() == [1.0, 2.0, 3.0]
    assert frame.loc[33:35, "level"].isna().all()
    assert frame.loc[33:35, "hours_since_reading"].isna().all()
    assert frame.loc[36, "level"] == values[36]
    assert frame.loc[20, "level"] == values[19]


def test_features_at_the_forecast_origin_match_training_features():
    spec = FeatureSpec(horizons=(1, 3, 6, 24)).with_sensors([1, 2])
    hourly = location_series(24 * 20, seed=5)
    origin = START + pd.Timedelta(days=16, hours=13)
    timezones = {10: "America/Mexico_City"}

    full = build_features(hourly, spec, timezones)
    served = build_features(hourly, spec, timezones, until=origin)
    history_only = build_features(
        hourly[hourly["datetime_utc"] <= origin], spec, timezones, until=origin
    )

    assert served.groupby("sensor_id")["datetime_utc"].max().eq(origin).all()
    hours = int((origin - START) / pd.Timedelta(hours=1)) + 1
    assert len(served) == 2 * hours
    profiles = [c for c in spec.feature_columns if c.startswith("same_hour_")]
    assert len(profiles) == len(PROFILE_DAYS) * len(spec.horizons)
    columns = ["sensor_id", "datetime_utc", *spec.feature_columns]
    expected = full.loc[full["datetime_utc"] == origin, columns].reset_index(drop=True)
    assert expected[profiles].notna().all().all()
    for frame in (served, history_only):
        at_origin = frame.loc[frame["datetime_utc"] == origin, columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(at_origin, expected)
        # Nothing after the origin is seen: its targets are unknown.
        assert frame.loc[frame["datetime_utc"] == origin, spec.target_columns].isna().all().all()


def test_forecast_origin_after_the_last_reading_carries_the_level():
    spec = FeatureSpec(horizons=(1, 3), max_fill_hours=3).with_sensors([1])
    hourly = readings(diurnal(72, 30, 10, 1, seed=4))
    last = hourly.iloc[-1]

    frame = build_features(hourly, spec, until=last["datetime_utc"] + pd.Timedelta(hours=2))

    assert frame["datetime_utc"].iloc[-1] == last["datetime_utc"] + pd.Timedelta(hours=2)
    assert frame["level"].iloc[-2:].tolist() == [last["value"]] * 2
    assert frame["hours_since_reading"].iloc[-2:].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("timezone", "zone"),
    [
        ("+05:30", dt.timezone(dt.timedelta(hours=5, minutes=30))),
        ("-03:00", dt.timezone(dt.timedelta(hours=-3))),
        ("America/Mexico_City", ZoneInfo("America/Mexico_City")),
        ("Europe/Berlin", ZoneInfo("Europe/Berlin")),  # crosses the DST switch on 2025-03-30
    ],
)
def test_calendar_features_use_local_time(timezone, zone):
    spec = FeatureSpec(horizons=(1,)).with_sensors([1, 2])
    start = pd.Timestamp("2025-03-29 00:00")
    hourly = pd.concat(
        [
            readings(np.full(72, 10.0), sensor_id=1, location_id=10, start=start),
            readings(np.full(72, 10.0), sensor_id=2, location_id=20, start=start),
        ],
        ignore_index=True,
    )

    frame = build_features(hourly, spec, {10: timezone, 20: "UTC"})

    for location_id, tz in ((10, zone), (20, dt.UTC)):
        rows = frame[frame["location_id"] == location_id]
        local = [t.replace(tzinfo=dt.UTC).astimezone(tz) for t in rows["datetime_utc"]]
        hour = np.array([t.hour + t.minute / 60 for t in local])
        np.testing.assert_allclose(rows["hour_sin"], np.sin(2 * np.pi * hour / 24), atol=1e-12)
        np.testing.assert_allclose(rows["hour_cos"], np.cos(2 * np.pi * hour / 24), atol=1e-12)
        assert rows["day_of_week"].tolist() == [float(t.weekday()) for t in local]
        assert rows["is_weekend"].tolist() == [float(t.weekday() >= 5) for t in local]


# ---------------------------------------------------------------------------------------------
# FeatureSpec


def test_feature_spec_survives_a_json_round_trip():
    spec = FeatureSpec(
        parameter="pm10", horizons=(2, 5), lags=(1, 4), windows=(3,), covariates=("o3",)
    ).with_sensors([7, 3])

    restored = FeatureSpec.from_json(spec.to_json())

    assert restored == spec
    assert restored.sensors == (3, 7)
    assert restored.feature_columns == spec.feature_columns


def test_spec_of_a_training_set_is_the_spec_it_was_built_with():
    spec = FeatureSpec(horizons=(1, 6)).with_sensors([1, 2])
    frame = build_features(location_series(72), spec)

    assert FeatureSpec.of_training_set(frame, "pm25") == spec


def test_a_training_set_without_a_network_has_no_relative_columns():
    """A lone sensor has no network: its relative columns would hold nothing."""
    lone = location_series(72)
    lone = lone[lone["sensor_id"] != 2]
    spec = FeatureSpec(horizons=(1, 6)).with_sensors([1])
    frame = build_features(lone, spec)

    assert frame["level_to_network_log"].isna().all()
    read = FeatureSpec.of_training_set(frame, "pm25")
    assert not set(RELATIVE_COLUMNS) & set(read.feature_columns)
    assert "network_now" in read.feature_columns


def test_spec_of_a_training_set_names_missing_columns():
    frame = build_features(location_series(72), FeatureSpec(horizons=(1,)).with_sensors([1, 2]))

    with pytest.raises(ValueError, match=r"lacks feature columns \['pm10_now'\]"):
        FeatureSpec.of_training_set(frame.drop(columns="pm10_now"), "pm25")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_a_batch_of_origins_gives_each_the_row_it_gets_alone(data, spec):
    """The service computes a request's rows in one pass: no row may see another's data."""
    readings, _, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    hourly, _ = clean_readings(readings)
    at = epoch_hours(origin)
    sensors, origins = [], []
    for sensor in features.sensor_series(hourly, spec, timezones):
        for shift, zone in ((0, sensor.timezone), (-30, "Europe/Berlin"), (3, None)):
            sensors.append(replace(sensor, timezone=zone))
            origins.append(at + shift)
    sensors.append(features.SensorSeries(HourlySeries.empty(), sensor_id=1))
    origins.append(at)

    rows, valid = features.origin_feature_rows(spec, sensors, origins)

    assert rows.shape == (len(sensors), len(spec.feature_columns)) and not valid[-1]
    for sensor, hour, row, ok in zip(sensors, origins, rows, valid, strict=True):
        alone = features.origin_features(spec, sensor, hour)
        if alone is None:
            assert not ok and np.isnan(row).all()
        else:
            assert ok
            np.testing.assert_array_equal(row, alone)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=st.sampled_from([FeatureSpec().with_sensors([1, 2]), SMALL_SPEC]))
def test_every_row_and_the_cleaning_report_match_the_pandas_reference(data, spec):
    """What training and batch predictions get (every hour of every sensor) is the
    reference's frame, column for column."""
    readings, _, origin, timezones = data.draw(random_histories(spec, (1, 2, 3)))
    until = data.draw(st.sampled_from([None, origin]))

    hourly, report = clean_readings(readings)
    frame = build_features(hourly, spec, timezones, until=until)  # type: ignore[arg-type]

    expected_hourly, expected_report = oracle.clean_readings(readings)
    assert report == expected_report
    pd.testing.assert_frame_equal(hourly, expected_hourly, check_dtype=False)
    expected = oracle.build_features(expected_hourly, spec, timezones, until=until)  # type: ignore[arg-type]
    assert list(frame.columns) == list(expected.columns)
    assert len(frame) == len(expected)
    if frame.empty:
        return
    for name in ["sensor_id", "location_id", "datetime_utc", "y", *spec.target_columns]:
        np.testing.assert_array_equal(frame[name].to_numpy(), expected[name].to_numpy(), name)
    scale = float(np.nanmax(np.abs(hourly["value"].to_numpy())))
    assert_same_columns(expected[spec.feature_columns], frame[spec.feature_columns], scale)


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "+25:00", "+05:75", "../etc/passwd", "x" * 300]
)
def test_unusable_time_zones_are_refused(timezone):
    with pytest.raises(ValueError, match=r"zone|offset"):
        features.check_timezone(timezone)


# ---------------------------------------------------------------------------------------------
# The network


def test_the_network_is_the_mean_of_the_other_sensors_at_each_hour():
    one = HourlySeries(np.array([10, 11, 12]), np.array([1.0, 2.0, 3.0]))
    two = HourlySeries(np.array([11, 12, 13]), np.array([10.0, 20.0, 30.0]))
    three = HourlySeries(np.array([12]), np.array([100.0]))

    networks = features.network_series({3: three, 1: one, 2: two, 4: HourlySeries.empty()})

    assert sorted(networks) == [1, 2, 3]  # a sensor without readings has no network
    np.testing.assert_array_equal(networks[1].hours, [11, 12, 13])
    np.testing.assert_array_equal(networks[1].values, [10.0, 60.0, 30.0])
    np.testing.assert_array_equal(networks[2].hours, [10, 11, 12])
    np.testing.assert_array_equal(networks[2].values, [1.0, 2.0, 51.5])
    np.testing.assert_array_equal(networks[3].values, [1.0, 6.0, 11.5, 30.0])
    assert features.network_series({1: one}) == {}


def test_a_sensor_with_no_neighbours_has_no_network_features():
    spec = FeatureSpec(horizons=(1,)).with_sensors([1, 2])
    alone = build_features(readings(diurnal(72, 30, 10, 1, seed=1)), spec)
    assert alone[["network_now", "network_change_1", "network_change_3"]].isna().all().all()
    assert alone["level"].notna().all()

    pair = pd.concat(
        [
            readings(diurnal(72, 30, 10, 1, seed=1)),
            readings(diurnal(72, 50, 10, 1, seed=2), sensor_id=2, location_id=20),
        ],
        ignore_index=True,
    )
    frame = build_features(pair, spec)
    for sensor_id, other in ((1, 2), (2, 1)):
        rows = frame[frame["sensor_id"] == sensor_id].reset_index(drop=True)
        theirs = frame[frame["sensor_id"] == other].reset_index(drop=True)
        # The hour's total less the sensor's own value: the other's, to the rounding of a sum.
        np.testing.assert_allclose(rows["network_now"], theirs["y"], rtol=1e-12)
        np.testing.assert_allclose(
            rows["network_change_1"], theirs["change_1"], rtol=1e-9, atol=1e-12
        )


def test_a_spec_saved_before_the_network_loads_without_its_columns():
    """Models saved before the network carry a spec without it: they read the columns they
    were trained on."""
    old = FeatureSpec(covariates=("pm10", "o3")).with_sensors([1, 2])
    raw = json.loads(old.to_json())
    del raw["hourly_changes"]

    restored = FeatureSpec.from_json(json.dumps(raw))

    assert restored.feature_columns == old.feature_columns
    assert not any(c.startswith("network") for c in restored.feature_columns)
    frame = build_features(location_series(72), restored)
    assert list(frame.columns[4 : -len(old.target_columns)]) == old.feature_columns


def test_a_spec_saved_before_the_relative_columns_loads_without_them():
    """Models saved before the level's relative columns (format 6 and older) read the
    network's columns but not those: their boosters were trained without them."""
    current = FeatureSpec().with_sensors([1, 2])
    raw = json.loads(current.to_json())
    del raw["relative"]

    restored = FeatureSpec.from_json(json.dumps(raw))

    assert [c for c in current.feature_columns if c not in RELATIVE_COLUMNS] == (
        restored.feature_columns
    )
    assert set(RELATIVE_COLUMNS) <= set(current.feature_columns)
    assert "network_now" in restored.feature_columns
    assert FeatureSpec.from_json(current.to_json()) == current


def test_the_drift_view_takes_ratios_only_to_pollutants_in_the_targets_units():
    """PM2.5 in µg/m³: its ratio to pm10 (µg/m³) is kept; to no2 in ppm (0.02) there is none,
    since 1 added to both sides made it PM2.5's own level (log 2 apart in an episode where
    both doubled); a ppm gas target keeps its ratio to another ppm gas."""
    hours = pd.date_range("2025-01-01", periods=4, freq="h")
    frame = pd.DataFrame(
        {
            "datetime_utc": hours,
            "y": 20.0,
            "mean_24": 20.0,
            "std_24": 1.0,
            "change_1": 0.0,
            "change_24": 0.0,
            "pm10_now": 40.0,
            "no2_now": 0.02,
            "temperature_now": 5.0,
        }
    )
    covariates = ("pm10", "no2", "temperature", features.NETWORK)

    pm25 = features.drift_view(frame, FeatureSpec(parameter="pm25", covariates=covariates))
    o3 = features.drift_view(
        frame.assign(y=0.03), FeatureSpec(parameter="o3", covariates=covariates)
    )

    assert "log_ratio_to_pm10" in pm25 and "log_ratio_to_no2" not in pm25
    assert pm25["log_ratio_to_pm10"].iloc[0] == pytest.approx(np.log(21 / 41))
    assert "log_ratio_to_no2" in o3 and "log_ratio_to_pm10" not in o3
    assert not any("temperature" in column for column in [*pm25, *o3])
