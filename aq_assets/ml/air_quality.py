"""What a forecast means for people: air-quality categories and the thresholds whose
exceedance probability each forecast carries.

The limits behind both are mostly for means over longer than an hour (24 hours for the WHO
2021 guideline of 15 µg/m³ for PM2.5 and the US EPA's PM AQI breakpoints of 2024, 8 hours for
ozone and carbon monoxide; the EPA's NO2 and SO2 breakpoints are 1-hour ones); aq forecasts
hourly values. So a forecast hour's category is the category its concentration would have if
it lasted the averaging period, as the EPA's NowCast reports an hour, and an hour's exceedance
probability is the chance that hour is above the threshold, not that the day's mean is: a day
can have unhealthy hours and a healthy mean. Concentrations are in the units aq cleans each
parameter into (`cleaning.DEFAULT_UNITS`: µg/m³ for PM, ppm for gases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aq_assets.ml.cleaning import UNIT_CONVERSIONS


@dataclass(frozen=True)
class Category:
    name: str
    upper: float  # the highest concentration in it (truncated as the EPA does)
    colour: str


def _scale(uppers: tuple[float, ...]) -> tuple[Category, ...]:
    names = (
        ("Good", "#00e400"),
        ("Moderate", "#ffff00"),
        ("Unhealthy for Sensitive Groups", "#ff7e00"),
        ("Unhealthy", "#ff0000"),
        ("Very Unhealthy", "#8f3f97"),
        ("Hazardous", "#7e0023"),
    )
    return tuple(
        Category(name, upper, colour)
        for (name, colour), upper in zip(names, (*uppers, math.inf), strict=True)
    )


# US EPA AQI breakpoints (2024 revision for PM2.5), by parameter, with the decimals the EPA
# truncates concentrations to before comparing; gases in ppm (the EPA's ppb for NO2 and SO2
# divided by 1,000; ozone's 8-hour scale, which ends at 0.200 ppm).
SCALES: dict[str, tuple[tuple[Category, ...], int]] = {
    "pm25": (_scale((9.0, 35.4, 55.4, 125.4, 225.4)), 1),
    "pm10": (_scale((54.0, 154.0, 254.0, 354.0, 424.0)), 0),
    "o3": (_scale((0.054, 0.070, 0.085, 0.105, 0.200)), 3),
    "no2": (_scale((0.053, 0.100, 0.360, 0.649, 1.249)), 3),
    "so2": (_scale((0.035, 0.075, 0.185, 0.304, 0.604)), 3),
    "co": (_scale((4.4, 9.4, 12.4, 15.4, 30.4)), 1),
}


def _ppm(parameter: str, micrograms: float) -> float:
    """A WHO guideline in µg/m³ in the ppm aq cleans a gas into (to 4 decimals)."""
    return round(micrograms * UNIT_CONVERSIONS[(parameter, "µg/m³")][0], 4)


# The WHO 2021 guideline (24-hour; ozone's 8-hour) and the top of the EPA's Moderate.
DEFAULT_THRESHOLDS: dict[str, tuple[float, ...]] = {
    "pm25": (15.0, 35.4),
    "pm10": (45.0, 154.0),
    "o3": (_ppm("o3", 100.0), 0.070),
    "no2": (_ppm("no2", 25.0), 0.100),
}


def category_indices(parameter: str, values: np.ndarray) -> np.ndarray:
    """Per value, the index in `SCALES[parameter]` of its category; -1 where the value is
    unknown or the parameter has no scale."""
    values = np.asarray(values, dtype=np.float64)
    scale = SCALES.get(parameter)
    if scale is None:
        return np.full(values.shape, -1)
    categories, decimals = scale
    truncated = np.floor(np.maximum(values, 0.0) * 10**decimals) / 10**decimals
    index = np.searchsorted([c.upper for c in categories], truncated, side="left")
    return np.where(np.isfinite(values), index, -1)


def thresholds(parameter: str, configured: str = "") -> tuple[float, ...]:
    """The thresholds forecasts carry exceedance probabilities for: `configured`
    (AQ_THRESHOLDS, comma-separated, in the parameter's units), else the parameter's
    defaults (none for a parameter without)."""
    if not configured.strip():
        return DEFAULT_THRESHOLDS.get(parameter, ())
    try:
        values = tuple(sorted({float(t) for t in configured.split(",") if t.strip()}))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(
            f"AQ_THRESHOLDS={configured!r}: expected concentrations in the parameter's units "
            "separated by commas, e.g. 15,35.4"
        )
    return values
