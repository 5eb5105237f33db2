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
    assert category_indices("co", np.array([3.0])).tolist() == [-1]
    assert category_indices("pm10", np.array([54.9, 55.0])).tolist() == [0, 1]


def test_thresholds_default_per_parameter_and_parse_what_is_configured():
    assert thresholds("pm25") == (15.0, 35.4)
    assert thresholds("co") == ()
    assert thresholds("pm25", " 50, 12.5 ,") == (12.5, 50.0)


@pytest.mark.parametrize("configured", ["abc", "15;35", "-1", "nan", ","])
def test_bad_thresholds_are_refused_with_the_variable_named(configured):
    with pytest.raises(ValueError, match="AQ_THRESHOLDS"):
        thresholds("pm25", configured)
