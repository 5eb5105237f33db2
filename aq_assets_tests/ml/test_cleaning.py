"""`aq_assets.ml.cleaning`: the rules, and stuck runs quarantined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aq_assets.ml import cleaning
from aq_assets.ml.cleaning import clean_readings, stuck_hours, without_stuck
from aq_assets_tests.hourly import UG, readings

# ---------------------------------------------------------------------------------------------
# clean_readings


@pytest.mark.parametrize(
    ("parameter", "units", "values", "expected", "counts"),
    [
        pytest.param("pm25", UG, [10, None, 12], [10, None, 12], {"null_values": 1}, id="null"),
        pytest.param("pm25", UG, [10, -999, 12], [10, None, 12], {"sentinels": 1}, id="sentinel"),
        pytest.param(
            "pm25", UG, [10, 5000, 12], [10, None, 12], {"implausible": 1}, id="implausible"
        ),
        pytest.param(
            "pm25", UG, [10, -3, 12], [10, 0, 12], {"negatives_clipped": 1}, id="small-negative"
        ),
        # Beyond the 10 µg/m³ noise tolerance a negative is not noise but a broken reading.
        pytest.param(
            "pm25", UG, [10, -15, 12], [10, None, 12], {"implausible": 1}, id="big-negative"
        ),
        pytest.param("bc", UG, [-5, 5000, 12], [-5, 5000, 12], {}, id="unknown-parameter"),
        pytest.param("pm25", "ppb", [-5, 5000, 12], [-5, 5000, 12], {}, id="unknown-units"),
    ],
)
def test_clean_readings_rules(parameter, units, values, expected, counts):
    """`expected` is the cleaned value of each reading, None where it is dropped."""
    raw = readings(values, parameter=parameter, units=units)

    hourly, report = clean_readings(raw)

    kept = [i for i, v in enumerate(expected) if v is not None]
    assert hourly["value"].tolist() == [float(expected[i]) for i in kept]
    assert hourly["datetime_utc"].tolist() == raw.loc[kept, "datetime_utc"].tolist()
    rules = ("null_values", "sentinels", "implausible", "negatives_clipped", "spikes")
    assert {rule: getattr(report, rule) for rule in rules} == {
        rule: counts.get(rule, 0) for rule in rules
    }
    assert report.rows_in == len(values)
    assert report.hours_out == len(kept)


def test_every_parameter_comes_out_in_its_usual_units_and_is_judged_in_them():
    """OpenAQ reports a gas in ppm at one place and in µg/m³ at the next, and temperature in
    °C or °F: one place's no2 beside another's means nothing unless they are cleaned into one
    unit. 5,000 µg/m³ of o3 (2.5 ppm) is implausible in either."""
    o3_ppm_per_ug = 24.45 / (1000 * 48.00)  # at 25 °C and 1 atm
    raw = pd.concat(
        [
            readings([0.030, 0.040], sensor_id=1, parameter="o3", units="ppm"),
            readings([60.0, 5000.0, 80.0], sensor_id=2, parameter="o3", units=UG),
            readings([20.0, 30.0], sensor_id=3, parameter="no2", units="ppb"),
            readings([59.0, -40.0, 300.0], sensor_id=4, parameter="temperature", units="f"),
        ],
        ignore_index=True,
    )

    hourly, report = clean_readings(raw)

    values = hourly.groupby("sensor_id")["value"].apply(list)
    assert values[1] == [0.030, 0.040]
    np.testing.assert_allclose(values[2], [60.0 * o3_ppm_per_ug, 80.0 * o3_ppm_per_ug])
    np.testing.assert_allclose(values[3], [0.020, 0.030])
    np.testing.assert_allclose(values[4], [15.0, -40.0])  # 300 °F is no weather
    assert report.implausible == 2
    bounds = cleaning.plausible_bounds(raw)  # what the ingest check judges, in raw units
    np.testing.assert_allclose(bounds["high"][raw["sensor_id"] == 2], 0.6 / o3_ppm_per_ug)


@pytest.mark.parametrize(
    ("parameter", "spelled", "usual"),
    [
        ("pm25", "ug/m3", UG),
        ("pm25", "μg/m^3", UG),  # Greek mu, not the micro sign
        ("o3", "UG M-3", UG),
        ("no2", "ppbv", "ppb"),
        ("co", "mg/m3", "mg/m³"),
        ("temperature", "°F", "f"),
        ("temperature", "deg C", "c"),
        ("relativehumidity", "percent", "%"),
    ],
)
def test_units_spelled_otherwise_are_converted_and_judged_as_the_usual_spelling(
    parameter, spelled, usual
):
    values = [1.0, 20.0, 1e6]  # the last is implausible for every parameter
    spelled_out, spelled_report = clean_readings(
        readings(values, parameter=parameter, units=spelled)
    )
    usual_out, usual_report = clean_readings(readings(values, parameter=parameter, units=usual))

    assert spelled_out["value"].tolist() == usual_out["value"].tolist()
    assert spelled_report.implausible == usual_report.implausible == 1
    assert cleaning.canonical_units("particles/cm³") == "particles/cm³"  # unknown: as sent


def test_a_request_cleaned_in_other_units_leaves_its_values_as_sent():
    values = np.array([60.0, 80.0, 20.0])
    laid = cleaning.clean_laid(
        np.array([0, 3600, 0]), values, np.array([0, 2, 3]), ["o3", "pm25"], [UG, UG]
    )

    np.testing.assert_allclose(laid[1], [60.0 * 24.45 / 48000, 80.0 * 24.45 / 48000, 20.0])
    assert values.tolist() == [60.0, 80.0, 20.0]


def test_clean_readings_averages_readings_within_an_hour():
    raw = readings([8, 20, 30])
    raw.loc[2, "datetime_utc"] = raw.loc[1, "datetime_utc"] + pd.Timedelta(minutes=20)

    hourly, report = clean_readings(raw)

    assert hourly["datetime_utc"].tolist() == raw["datetime_utc"].dt.floor("h").unique().tolist()
    assert hourly["value"].tolist() == [8.0, (20.0 + 30.0) / 2]
    assert report.repeated_hours == 1
    assert report.hours_out == 2


def test_clean_readings_drops_an_isolated_spike():
    day = [10.0 + (i % 3) for i in range(24)]  # a quiet day around 10 µg/m³
    raw = readings([*day, 600.0, *day[:3]])

    hourly, report = clean_readings(raw)

    spike_hour = raw.loc[24, "datetime_utc"]
    assert spike_hour not in set(hourly["datetime_utc"])
    assert report.spikes == 1
    assert len(hourly) == len(raw) - 1
    assert (hourly["value"] < 600).all()


# A 12-hour build-up barely moves the preceding 24 h median; the rule must also look at the
# hours just before the reading, or the top of every fast episode is dropped as "spikes".
def test_clean_readings_keeps_a_gradual_episode():
    rising = np.linspace(10, 300, 13)[1:]  # 10 -> 300 over 12 hours, ~24 µg/m³ per hour
    raw = readings([10.0] * 24 + list(rising))

    hourly, report = clean_readings(raw)

    assert report.spikes == 0
    assert hourly["value"].tolist() == raw["value"].tolist()


def test_stuck_runs_of_the_target_are_quarantined_floors_gaps_and_covariates_are_not():
    hours = pd.date_range("2025-01-01", periods=14, freq="h")
    one_gap = hours.delete(6)  # 13 hours of 7.0 with a missing hour: two runs of 6 and 7

    def sensor(sensor_id, parameter, times, values):
        return pd.DataFrame(
            {
                "sensor_id": sensor_id,
                "location_id": 1,
                "parameter": parameter,
                "datetime_utc": times,
                "value": values,
            }
        )

    hourly = pd.concat(
        [
            sensor(1, "pm25", hours, [3.0, 4.0] + [5.0] * 12),  # stuck for 12 hours
            sensor(2, "pm25", hours, [0.0] * 14),  # a floor: clean air
            sensor(3, "pm25", one_gap, [7.0] * 13),
            sensor(4, "co", hours, [0.1] * 14),  # a covariate at its resolution
        ],
        ignore_index=True,
    )

    stuck = stuck_hours(hourly)
    assert stuck[hourly["sensor_id"] == 1].tolist() == [False, False] + [True] * 12
    assert not stuck[hourly["sensor_id"].isin([2, 3])].any()
    kept, quarantined = without_stuck(hourly, "pm25")
    assert quarantined == 12 and len(kept) == len(hourly) - 12
    assert (kept["sensor_id"] == 4).sum() == 14


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([10, None, 12], [10, 12], id="null"),
        pytest.param([10, -999, 12], [10, 12], id="sentinel"),
        pytest.param([10, 5000, 12], [10, 12], id="implausible"),
        pytest.param([10, -3, 12], [10, 0, 12], id="small-negative"),
        pytest.param([10, -15, 12], [10, 12], id="big-negative"),
        pytest.param([*([10.0] * 24), 600.0, 11.0], [*([10.0] * 24), 11.0], id="spike"),
    ],
)
def test_clean_series_rules(values, expected):
    seconds = np.arange(len(values)) * cleaning.SECONDS_PER_HOUR
    raw = np.array([np.nan if v is None else v for v in values], dtype="float64")

    series = cleaning.clean_series(seconds, raw, "pm25", UG)

    assert series.values.tolist() == [float(v) for v in expected]


def test_a_batch_cleans_each_series_as_if_alone():
    """Five readings are too few to call the sixth a spike; the series cleaned before it in
    the same batch must not lend one (nor its hours, nor its units)."""
    hour = 3600
    before = cleaning.RawSeries(
        np.arange(3) * hour, np.array([5.0, 5.0, 5.0]), "pm25", np.array(["ppb"] * 3)
    )
    alone = cleaning.RawSeries(
        np.arange(6) * hour, np.array([5.0, 5.0, 5.0, 5.0, 5.0, 200.0]), "pm25", UG
    )

    cleaned = cleaning.clean_many([before, alone])

    assert cleaned[1].values.tolist() == [5.0, 5.0, 5.0, 5.0, 5.0, 200.0]
    np.testing.assert_array_equal(cleaned[1].hours, np.arange(6))
    with_six = cleaning.RawSeries(np.arange(7) * hour, np.array([5.0] * 6 + [200.0]), "pm25", UG)
    assert 200.0 not in cleaning.clean_many([before, with_six])[1].values  # the rule works


@pytest.mark.parametrize(
    "values", [[], [np.nan], [-999.0, 5000.0]], ids=["none", "null", "all-dropped"]
)
def test_a_batch_without_a_valid_reading_cleans_to_empty_series(values):
    """Found by the API fuzz: a pm25 batch whose readings all go must not reach the spike rule."""
    raw = cleaning.RawSeries(np.arange(len(values)) * 3600, np.array(values), "pm25", UG)

    cleaned = cleaning.clean_many([raw, raw])

    assert [len(series) for series in cleaned] == [0, 0]


def test_values_within_an_hour_are_averaged_with_pandas_compensated_sum():
    # Naive summation loses the small values next to the big ones; pandas' Kahan sum does not.
    values = np.array([0.1, 1e15, 0.3, -1e15, 0.7, 0.2])
    seconds = np.arange(values.size) * 60  # all in the first hour
    readings = pd.DataFrame(
        {
            "sensor_id": 1,
            "location_id": 1,
            "parameter": "bc",
            "units": UG,
            "datetime_utc": pd.Timestamp("1970-01-01") + pd.to_timedelta(seconds, unit="s"),
            "value": values,
        }
    )

    series = cleaning.clean_series(seconds, values, "bc", UG)

    assert series.values.tolist() == clean_readings(readings)[0]["value"].tolist()
