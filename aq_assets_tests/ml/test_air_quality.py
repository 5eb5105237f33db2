"""AQI categories at the EPA's breakpoints, and the thresholds AQ_THRESHOLDS names."""

from __future__ import annotations

import numpy as np
import pytest

from aq_assets.ml.air_quality import SCALES, category_indices, thresholds


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (0.0, "Good"),
        (9.0, "Good"),
        (9.09, "Good"),  # truncated to 9.0, as the EPA does
        (9.1, "Moderate"),
        (35.4, "Moderate"),
        (35.5, "Unhealthy for Sensitive Groups"),
        (55.5, "Unhealthy"),
        (125.5, "Very Unhealthy"),
        (225.5, "Hazardous"),
        (900.0, "Hazardous"),
        (-2.0, "Good"),  # cleaning keeps small negatives as 0
    ],
)
def test_pm25_categories_follow_the_2024_breakpoints(value, name):
    (index,) = category_indices("pm25", np.array([value]))

    assert SCALES["pm25"][0][index].name == name


def test_unknown_values_and_parameters_have_no_category():
    assert category_indices("pm25", np.array([np.nan])).tolist() == [-1]
    assert category_indices("bc", np.array([3.0])).tolist() == [-1]
    assert category_indices("pm10", np.array([54.9, 55.0])).tolist() == [0, 1]


def test_thresholds_default_per_parameter_and_parse_what_is_configured():
    assert thresholds("pm25") == (15.0, 35.4)
    assert thresholds("bc") == ()
    assert thresholds("pm25", " 50, 12.5 ,") == (12.5, 50.0)


@pytest.mark.parametrize(
    ("parameter", "value", "name"),
    [
        ("no2", 0.0539, "Good"),  # 53 ppb, truncated
        ("no2", 0.054, "Moderate"),
        ("no2", 0.101, "Unhealthy for Sensitive Groups"),
        ("o3", 0.071, "Unhealthy for Sensitive Groups"),
        ("o3", 0.201, "Hazardous"),
        ("co", 9.5, "Unhealthy for Sensitive Groups"),
    ],
)
def test_gases_are_categorized_in_ppm_at_the_epas_breakpoints(parameter, value, name):
    (index,) = category_indices(parameter, np.array([value]))

    assert SCALES[parameter][0][index].name == name


def test_gas_thresholds_are_the_who_guidelines_in_ppm():
    # WHO 2021: NO2 25 µg/m³ (24 h), O3 100 µg/m³ (8 h), at 25 °C and 1 atm.
    assert thresholds("no2") == (0.0133, 0.1)
    assert thresholds("o3") == (0.0509, 0.07)


@pytest.mark.parametrize("configured", ["abc", "15;35", "-1", "nan", ","])
def test_bad_thresholds_are_refused_with_the_variable_named(configured):
    with pytest.raises(ValueError, match="AQ_THRESHOLDS"):
        thresholds("pm25", configured)
