"""The simulated source: contract, determinism, realism and drift injection."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from aq_assets.defs.ingest.sources.base import CATALOG_COLUMNS, READING_COLUMNS, Sensor
from aq_assets.defs.ingest.sources.simulated import (
    DRIFT_ENV_VAR,
    Drift,
    SimulatedSource,
    parse_drift,
    simulated_location,
)

START = dt.date(2024, 1, 1)
DRIFT_DAY = dt.date(2024, 3, 1)
DEFAULT_SENSOR_IDS = {
    location * 1000 + parameter_id
    for location in range(9001, 9006)
    for parameter_id in (1, 2, 7, 10)
}


def days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range(count)]


def catalog_sensors(source: SimulatedSource, parameter: str | None = None) -> list[Sensor]:
    catalog = source.list_sensors()
    if parameter is not None:
        catalog = catalog[catalog["parameter"] == parameter]
    return [
        Sensor(row.sensor_id, row.location_id, row.parameter, row.units, row.timezone)
        for row in catalog.itertuples()
    ]


def sensor(source: SimulatedSource, location_id: int, parameter: str) -> Sensor:
    (found,) = [
        s
        for s in catalog_sensors(source, parameter)
        if s.location_id == location_id and s.parameter == parameter
    ]
    return found


def history(source: SimulatedSource, sensors: list[Sensor], span: list[dt.date]) -> pd.DataFrame:
    return pd.concat(
        [source.fetch_day(s, day).readings for s in sensors for day in span], ignore_index=True
    )


def hourly_series(source: SimulatedSource, s: Sensor, span: list[dt.date]) -> pd.Series:
    """The sensor's values on a complete hourly index (NaN where missing)."""
    frame = history(source, [s], span).set_index("datetime_utc")["value"]
    full_index = pd.date_range(pd.Timestamp(span[0]), periods=24 * len(span), freq="h")
    return frame.reindex(full_index)


def local_hour(datetime_utc: pd.Series, location_id: int) -> pd.Series:
    offset = pd.Timedelta(minutes=simulated_location(location_id).utc_offset_minutes)
    return (datetime_utc + offset).dt.hour


# --- catalog -------------------------------------------------------------------------


def test_default_catalog_has_four_sensors_at_five_locations() -> None:
    catalog = SimulatedSource().list_sensors()

    assert catalog.dtypes.astype(str).to_dict() == CATALOG_COLUMNS
    assert set(catalog["sensor_id"]) == DEFAULT_SENSOR_IDS
    assert len(catalog) == 20
    assert set(catalog["source"]) == {"simulated"}
    assert (catalog["first_seen_utc"] == pd.Timestamp("2020-01-01")).all()
    assert catalog["last_seen_utc"].isna().all()
    units = catalog.drop_duplicates("parameter").set_index("parameter")["units"].to_dict()
    assert units == {"pm10": "µg/m³", "pm25": "µg/m³", "no2": "ppm", "o3": "ppm"}
    assert {"-06:00", "-05:00", "+00:00", "+01:00", "+05:30"} == set(catalog["timezone"])
    assert catalog["location_name"].str.startswith("Simulated ").all()
    assert catalog["latitude"].between(-90, 90).all()
    assert catalog["longitude"].between(-180, 180).all()


def test_custom_locations_give_sensor_ids_from_the_location_id() -> None:
    catalog = SimulatedSource(locations="101, 202").list_sensors()

    assert len(catalog) == 8
    assert {101002, 101001, 101007, 101010, 202002} <= set(catalog["sensor_id"])
    assert catalog["timezone"].str.fullmatch(r"[+-]\d\d:\d\d").all()
    # Invented from the id alone: another seed, another instance, same site.
    other = SimulatedSource(locations="202,101", seed=7).list_sensors()
    columns = ["sensor_id", "location_name", "latitude", "longitude", "timezone"]
    pd.testing.assert_frame_equal(catalog[columns], other[columns])


def test_unknown_target_parameter_is_added_as_an_extra_sensor() -> None:
    source = SimulatedSource(parameter="co", locations="101")
    catalog = source.list_sensors()

    assert set(catalog["sensor_id"]) == {101001, 101002, 101007, 101010, 101099}
    co = sensor(source, 101, "co")
    assert co.units == "ppm"
    readings = source.fetch_day(co, START).readings
    assert len(readings) > 0
    assert readings["value"].between(-0.1, 5).all()


def test_target_only_offers_the_target_sensor_alone_with_the_same_readings() -> None:
    full = SimulatedSource(locations="101,202")
    alone = SimulatedSource(locations="101,202", target_only=True)
    catalog = alone.list_sensors()

    assert set(catalog["sensor_id"]) == {101002, 202002}
    pd.testing.assert_frame_equal(
        catalog.reset_index(drop=True),
        full.list_sensors().query("parameter == 'pm25'").reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(
        alone.fetch_day(sensor(alone, 202, "pm25"), START).readings,
        full.fetch_day(sensor(full, 202, "pm25"), START).readings,
    )


@pytest.mark.parametrize("locations", ["abc", "101,,202", "-5", "0"])
def test_invalid_locations_are_rejected(locations: str) -> None:
    with pytest.raises(ValueError, match="locations"):
        SimulatedSource(locations=locations).list_sensors()


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        SimulatedSource(seed=-1)


# --- one day of readings ---------------------------------------------------------------


def test_fetch_day_returns_hourly_rows_inside_the_utc_day() -> None:
    source = SimulatedSource()
    day = dt.date(2024, 7, 14)
    for s in catalog_sensors(source):
        result = source.fetch_day(s, day)
        readings = result.readings

        assert result.rejected == []
        assert readings.dtypes.astype(str).to_dict() == READING_COLUMNS
        assert len(readings) <= 24
        assert readings["datetime_utc"].is_unique
        assert (readings["datetime_utc"] >= pd.Timestamp(day)).all()
        assert (readings["datetime_utc"] < pd.Timestamp(day) + pd.Timedelta(days=1)).all()
        assert (readings["datetime_utc"] == readings["datetime_utc"].dt.floor("h")).all()
        assert readings["value"].notna().all()
        assert (readings["sensor_id"] == s.sensor_id).all()
        assert (readings["location_id"] == s.location_id).all()
        assert (readings["parameter"] == s.parameter).all()
        assert (readings["units"] == s.units).all()
        assert (readings["source"] == "simulated").all()


def test_fetch_day_accepts_a_datetime_as_its_day() -> None:
    source = SimulatedSource()
    s = sensor(source, 9001, "pm25")
    by_date = source.fetch_day(s, dt.date(2024, 5, 5)).readings
    by_datetime = source.fetch_day(s, dt.datetime(2024, 5, 5, 13, 30)).readings
    pd.testing.assert_frame_equal(by_date, by_datetime)


# --- determinism -----------------------------------------------------------------------


def test_same_sensor_day_gives_the_same_frame_whatever_the_order() -> None:
    span = days(START, 20)
    first = SimulatedSource()
    sensors = catalog_sensors(first)[:8]
    forward = {(s.sensor_id, d): first.fetch_day(s, d).readings for s in sensors for d in span}
    again = {(s.sensor_id, d): first.fetch_day(s, d).readings for s in sensors for d in span}
    fresh = SimulatedSource()
    backward = {
        (s.sensor_id, d): fresh.fetch_day(s, d).readings
        for d in reversed(span)
        for s in reversed(sensors)
    }

    for key, frame in forward.items():
        pd.testing.assert_frame_equal(frame, again[key])
        pd.testing.assert_frame_equal(frame, backward[key])


def test_another_process_gives_the_same_values() -> None:
    script = (
        "import datetime as dt;"
        "from aq_assets.defs.ingest.sources.base import Sensor;"
        "from aq_assets.defs.ingest.sources.simulated import SimulatedSource;"
        "s = Sensor(9005002, 9005, 'pm25', 'µg/m³');"
        "SimulatedSource().fetch_day(s, dt.date(2024, 3, 1));"  # a later day first, cold caches
        "r = SimulatedSource().fetch_day(s, dt.date(2024, 2, 29)).readings;"
        "print(r['value'].tolist())"
    )
    # A different hash seed would change anything that leaned on Python's hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout
    here = SimulatedSource().fetch_day(Sensor(9005002, 9005, "pm25", "µg/m³"), dt.date(2024, 2, 29))

    assert output.strip() == str(here.readings["value"].tolist())


def test_a_sensor_of_a_location_it_does_not_simulate_has_no_readings() -> None:
    """Another source's sensor left in the catalog (an archive's Mexico City monitor) gets no
    invented values when a simulated backfill asks for every registered sensor."""
    mexico_city = Sensor(8000002, 8000, "pm25", "µg/m³")

    assert SimulatedSource().fetch_day(mexico_city, START).readings.empty
    assert not SimulatedSource(locations="8000").fetch_day(mexico_city, START).readings.empty


def test_seed_changes_the_values() -> None:
    s = Sensor(9001002, 9001, "pm25", "µg/m³")
    zero = SimulatedSource().fetch_day(s, START).readings["value"].to_numpy()
    one = SimulatedSource(seed=1).fetch_day(s, START).readings["value"].to_numpy()

    assert len(zero) != len(one) or not np.array_equal(zero, one)


# --- realism ---------------------------------------------------------------------------


def test_hours_go_missing_sometimes() -> None:
    source = SimulatedSource()
    counts = [
        len(source.fetch_day(s, day).readings)
        for s in catalog_sensors(source, "pm25")
        for day in days(START, 60)
    ]
    missing_share = 1 - sum(counts) / (24 * len(counts))

    assert 0.02 < missing_share < 0.10
    assert min(counts) < 20  # an outage, not only scattered hours


def test_levels_are_those_of_a_city() -> None:
    source = SimulatedSource()
    readings = history(source, catalog_sensors(source, "pm25"), days(START, 120))
    means = readings.groupby("location_id")["value"].mean()

    assert means.between(8, 40).all()
    assert readings["value"].quantile(0.999) > 80


def test_pm25_has_a_diurnal_cycle_in_local_time() -> None:
    source = SimulatedSource()
    for location_id in (9001, 9005):
        s = sensor(source, location_id, "pm25")
        readings = history(source, [s], days(START, 120))
        by_hour = readings.groupby(local_hour(readings["datetime_utc"], location_id))["value"]
        means = by_hour.mean()

        assert means.max() / means.min() > 1.3
        assert means.loc[19:22].mean() > 1.2 * means.loc[13:16].mean()  # evening over afternoon
        assert means.loc[7:9].mean() > 1.1 * means.loc[13:16].mean()  # morning over afternoon


def test_ozone_peaks_in_the_afternoon_and_moves_against_no2() -> None:
    source = SimulatedSource()
    span = days(START, 90)
    o3 = hourly_series(source, sensor(source, 9004, "o3"), span)
    no2 = hourly_series(source, sensor(source, 9004, "no2"), span)
    o3_by_local_hour = o3.groupby((o3.index + pd.Timedelta(hours=1)).hour).mean()

    assert o3_by_local_hour.loc[13:16].mean() > 2 * o3_by_local_hour.loc[5:8].mean()
    assert o3.corr(no2) < -0.2


def test_weekends_are_cleaner() -> None:
    source = SimulatedSource()
    for parameter in ("no2", "pm25"):
        readings = history(source, catalog_sensors(source, parameter), days(START, 182))
        local = readings["datetime_utc"] + pd.to_timedelta(
            readings["location_id"].map(
                lambda location: simulated_location(location).utc_offset_minutes
            ),
            unit="min",
        )
        weekend = local.dt.weekday >= 5

        assert readings["value"][weekend].mean() < 0.92 * readings["value"][~weekend].mean()


def test_daily_means_persist_from_day_to_day() -> None:
    source = SimulatedSource()
    for location_id in (9002, 9003):
        series = hourly_series(source, sensor(source, location_id, "pm25"), days(START, 90))
        daily = series.resample("D").mean()

        assert daily.autocorr(lag=1) > 0.4
        assert series.autocorr(lag=24) > 0.3


def test_co_located_pm25_and_pm10_move_together() -> None:
    source = SimulatedSource()
    span = days(START, 60)
    pm25 = hourly_series(source, sensor(source, 9003, "pm25"), span)
    pm10 = hourly_series(source, sensor(source, 9003, "pm10"), span)
    elsewhere = hourly_series(source, sensor(source, 9001, "pm25"), span)

    assert pm25.corr(pm10) > 0.6
    assert pm10.mean() > 1.3 * pm25.mean()
    assert abs(pm25.corr(elsewhere)) < 0.3  # locations have their own weather


def test_small_negatives_and_spikes_occur_but_rarely() -> None:
    source = SimulatedSource()
    sensors = catalog_sensors(source, "pm25")
    span = days(START, 180)
    values = pd.concat([hourly_series(source, s, span) for s in sensors], ignore_index=True)
    present = values.dropna()
    negatives = present[present < 0]

    assert 0 < len(negatives) < 0.01 * len(present)
    assert negatives.min() > -6
    # A spike stands far above both neighbours; smooth weather never does that in an hour.
    neighbours = pd.concat([values.shift(1), values.shift(-1)], axis=1).max(axis=1)
    spikes = (values > 2 * neighbours) & (neighbours > 5)
    assert 0.0005 < spikes.sum() / len(present) < 0.01


def test_no_jump_at_midnight() -> None:
    source = SimulatedSource()
    span = days(START, 120)
    for location_id in (9003, 9005):
        series = hourly_series(source, sensor(source, location_id, "pm25"), span)
        jumps = series.diff().abs()
        midnight = jumps[jumps.index.hour == 0].mean()

        assert midnight < 1.5 * jumps.mean()


# --- drift -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", None),
        ("   ", None),
        ("level_shift@2025-06-01", Drift("level_shift", dt.date(2025, 6, 1), 1.0)),
        ("level_shift@2025-06-01:0.5", Drift("level_shift", dt.date(2025, 6, 1), 0.5)),
        ("variance@2025-06-01", Drift("variance", dt.date(2025, 6, 1), 3.0)),
        (" variance@2025-06-01:3 ", Drift("variance", dt.date(2025, 6, 1), 3.0)),
        ("broken_sensor@2025-06-01", Drift("broken_sensor", dt.date(2025, 6, 1), 0.0)),
    ],
)
def test_parse_drift_reads_valid_specs(spec: str, expected: Drift | None) -> None:
    assert parse_drift(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "level_shift",
        "shift@2025-06-01",
        "level_shift@2025-13-01",
        "level_shift@01-06-2025",
        "level_shift@2025-06-01:big",
        "level_shift@2025-06-01:-1",
        "level_shift@2025-06-01:nan",
        "variance@2025-06-01:0",
        "broken_sensor@2025-06-01:2",
        "level_shift@2025-06-01:1:2",
    ],
)
def test_parse_drift_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=DRIFT_ENV_VAR) as error:
        parse_drift(spec)

    assert spec in str(error.value)
    assert "KIND@YYYY-MM-DD" in str(error.value)


def test_a_bad_drift_fails_when_the_resource_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRIFT_ENV_VAR, "level_shift@tomorrow")
    resources = {"source": SimulatedSource(drift=dg.EnvVar(DRIFT_ENV_VAR))}

    with pytest.raises(dg.DagsterResourceFunctionError) as error, dg.build_resources(resources):
        pass
    assert DRIFT_ENV_VAR in str(error.value.__cause__)


def test_drift_from_the_env_var_reaches_the_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRIFT_ENV_VAR, f"level_shift@{DRIFT_DAY}")
    s = Sensor(9001002, 9001, "pm25", "µg/m³")
    with dg.build_resources({"source": SimulatedSource(drift=dg.EnvVar(DRIFT_ENV_VAR))}) as r:
        drifted = r.source.fetch_day(s, DRIFT_DAY).readings["value"]
    baseline = SimulatedSource().fetch_day(s, DRIFT_DAY).readings["value"]

    assert drifted.sum() > 1.5 * baseline.sum()


def drift_sensors(source: SimulatedSource) -> list[Sensor]:
    """Every target sensor, and the other sensors of one location."""
    return [s for s in catalog_sensors(source) if s.parameter == "pm25" or s.location_id == 9001]


def readings_around_drift_day(spec: str) -> pd.DataFrame:
    """Readings 10 days either side of DRIFT_DAY with `spec` as the drift."""
    source = SimulatedSource(drift=spec)
    return history(source, drift_sensors(source), days(DRIFT_DAY - dt.timedelta(days=10), 20))


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return readings_around_drift_day("")


def split(frame: pd.DataFrame, parameter: str = "pm25") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(before, from) the drift day, for one parameter."""
    rows = frame[frame["parameter"] == parameter]
    after = rows["datetime_utc"] >= pd.Timestamp(DRIFT_DAY)
    return rows[~after], rows[after]


def drift_day_values(frame: pd.DataFrame, sensor_id: int) -> np.ndarray:
    """One sensor's values on DRIFT_DAY itself."""
    day = frame["datetime_utc"].dt.date == DRIFT_DAY
    return frame.loc[day & (frame["sensor_id"] == sensor_id), "value"].to_numpy()


def assert_only_target_changes_from_drift_day(clean: pd.DataFrame, drifted: pd.DataFrame) -> None:
    """Nothing changes before the drift day nor for other parameters; every target sensor
    changes from the drift day itself."""
    clean_before, clean_after = split(clean)
    drifted_before, drifted_after = split(drifted)
    pd.testing.assert_frame_equal(clean_before, drifted_before)
    for parameter in ("pm10", "no2", "o3"):
        pd.testing.assert_frame_equal(
            clean[clean["parameter"] == parameter], drifted[drifted["parameter"] == parameter]
        )
    for sensor_id in clean_after["sensor_id"].unique():
        assert not np.array_equal(
            drift_day_values(clean_after, sensor_id), drift_day_values(drifted_after, sensor_id)
        )


@pytest.mark.parametrize(("spec", "ratio"), [("", 2.0), (":0.5", 1.5), (":-0.5", 0.5)])
def test_level_shift_scales_the_level_from_its_day(
    clean: pd.DataFrame, spec: str, ratio: float
) -> None:
    drifted = readings_around_drift_day(f"level_shift@{DRIFT_DAY}{spec}")
    assert_only_target_changes_from_drift_day(clean, drifted)

    _, clean_after = split(clean)
    _, drifted_after = split(drifted)
    observed = drifted_after["value"].mean() / clean_after["value"].mean()
    assert observed == pytest.approx(ratio, rel=0.05)


def test_variance_widens_the_spread_but_keeps_the_mean(clean: pd.DataFrame) -> None:
    drifted = readings_around_drift_day(f"variance@{DRIFT_DAY}")
    assert_only_target_changes_from_drift_day(clean, drifted)

    def hour_to_hour_spread(frame: pd.DataFrame) -> float:
        ordered = frame.sort_values(["sensor_id", "datetime_utc"])
        return float(ordered.groupby("sensor_id")["value"].diff().std())

    _, clean_after = split(clean)
    _, drifted_after = split(drifted)
    assert hour_to_hour_spread(drifted_after) > 2 * hour_to_hour_spread(clean_after)
    assert drifted_after["value"].std() > 1.3 * clean_after["value"].std()
    assert drifted_after["value"].mean() == pytest.approx(clean_after["value"].mean(), rel=0.15)


def test_broken_sensor_sticks_every_target_sensor_from_its_day(clean: pd.DataFrame) -> None:
    drifted = readings_around_drift_day(f"broken_sensor@{DRIFT_DAY}")
    assert_only_target_changes_from_drift_day(clean, drifted)

    _, drifted_after = split(drifted)
    assert drifted_after["location_id"].nunique() == 5
    for _, readings in drifted_after.groupby("sensor_id"):
        stuck = readings["value"].mode().iloc[0]
        daily_medians = readings.groupby(readings["datetime_utc"].dt.date)["value"].median()

        assert stuck > 0
        assert (readings["value"] == stuck).mean() > 0.8
        assert daily_medians.nunique() == 1
    assert (drifted_after["value"] == 0).any()
    assert (drifted_after["value"] > 3 * drifted_after["value"].median()).any()
