"""The forecast page of a sensor: the last days of readings, the next hours' median with
its 80% and 90% bands over the AQI colours, and the chance of exceeding each threshold, drawn
as SVG on the server (no script, no CDN: it works offline and on any phone). Its numbers are
the GET forecast's answer, decoded, so the page and the API cannot disagree."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from aq_assets.ml.air_quality import SCALES
from aq_assets.ml.cleaning import HourlySeries

SHOWN_HOURS = 72  # of readings before the origin
WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28  # the plot's margins, for the axes' labels
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Colour:
    name: str
    colour: str
    y_top: float
    height: float


@dataclass(frozen=True)
class Tick:
    at: float  # x or y in the drawing
    label: str


@dataclass(frozen=True)
class Chart:
    readings: str  # SVG path data
    median: str  # polyline points
    band80: str  # polygon points
    band90: str
    categories: list[Colour]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    origin_x: float | None


def chart(answer: dict[str, Any], series: HourlySeries, parameter: str) -> Chart:
    """The chart of `answer` (a GET /v1/sensors/{id}/forecast body) after the last
    SHOWN_HOURS of the sensor's cleaned readings."""
    origin = _hour(answer.get("origin_utc"))
    forecasts = [f for f in answer.get("forecasts", []) if f.get("value") is not None]
    end_of_readings = origin if origin is not None else _last_hour(series)
    start = (end_of_readings or 0) - SHOWN_HOURS
    shown = series.hours >= start
    hours, values = series.hours[shown], series.values[shown]
    stop = max((_hour(f["forecast_for_utc"]) or 0 for f in forecasts), default=end_of_readings)
    stop = max(stop or 0, start + 1)
    tops = [*values.tolist(), *(_first(_q(f, "q95"), f["value"]) for f in forecasts)]
    y_max = _nice_ceiling(max([t for t in tops if t is not None and math.isfinite(t)] or [1.0]))

    def x(hour: float) -> float:
        return LEFT + (hour - start) / (stop - start) * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return HEIGHT - BOTTOM - min(value, y_max) / y_max * (HEIGHT - TOP - BOTTOM)

    level = answer.get("level")
    anchor = [(float(origin), float(level))] if origin is not None and level is not None else []
    at = [(float(_hour(f["forecast_for_utc"]) or 0), f) for f in forecasts]

    def line(name: str) -> list[tuple[float, float]]:
        return [(h, float(_first(_q(f, name), f["value"]) or 0.0)) for h, f in at]

    def band(low: str, high: str) -> str:
        if not forecasts or _q(forecasts[0], low) is None:
            return ""
        outline = [*anchor, *line(high), *reversed(line(low)), *anchor]
        return _points([(x(h), y(v)) for h, v in outline])

    return Chart(
        readings=_path(
            [(x(h), y(v)) for h, v in zip(hours.tolist(), values.tolist(), strict=True)], hours
        ),
        median=_points([(x(h), y(v)) for h, v in [*anchor, *line("q50")]]),
        band80=band("q10", "q90"),
        band90=band("q05", "q95"),
        categories=_colours(parameter, y_max, y),
        x_ticks=[Tick(x(h), _clock(h)) for h in range(start + (-start) % 12, stop + 1, 12)],
        y_ticks=[Tick(y(v), f"{v:g}") for v in _ticks(y_max)],
        origin_x=x(origin) if origin is not None else None,
    )


def _colours(parameter: str, y_max: float, y: Any) -> list[Colour]:
    scale = SCALES.get(parameter)
    out: list[Colour] = []
    lower = 0.0
    for category in scale[0] if scale else ():
        top = min(category.upper, y_max)
        if lower >= y_max:
            break
        out.append(Colour(category.name, category.colour, y(top), y(lower) - y(top)))
        lower = category.upper
    return out


def _path(points: list[tuple[float, float]], hours: np.ndarray) -> str:
    """SVG path data through the points, lifted over missing hours (gaps stay gaps)."""
    parts = []
    for i, (px, py) in enumerate(points):
        joined = i > 0 and hours[i] - hours[i - 1] == 1
        parts.append(f"{'L' if joined else 'M'}{px:.1f},{py:.1f}")
    return " ".join(parts)


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _q(forecast: dict[str, Any], name: str) -> float | None:
    quantiles = forecast.get("quantiles")
    return None if quantiles is None else quantiles.get(name)


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _hour(iso: str | None) -> int | None:
    if iso is None:
        return None
    moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int((moment - _EPOCH).total_seconds() // 3600)


def _last_hour(series: HourlySeries) -> int | None:
    return int(series.hours[-1]) if len(series) else None


def _clock(hour: int) -> str:
    moment = _EPOCH + dt.timedelta(hours=hour)
    return moment.strftime("%d %b %H:%M") if moment.hour == 0 else moment.strftime("%H:%M")


def _ticks(y_max: float) -> list[float]:
    """0 to `y_max` in at most six round steps."""
    power = 10 ** math.floor(math.log10(y_max))
    step = next(
        k * power / 10 for k in (1, 2, 2.5, 5, 10, 20, 25, 50) if y_max / (k * power / 10) <= 6
    )
    return [round(i * step, 6) for i in range(int(y_max / step + 1e-9) + 1)]


def _nice_ceiling(value: float) -> float:
    """The next of 1, 2, 2.5, 5 × 10^k at or above `value` × 1.1."""
    value = max(value * 1.1, 1e-9)
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


@lru_cache(maxsize=1)
def templates() -> Any:
    """The pages' Jinja2 environment (templates ship in the package), escaping by default."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = Path(__file__).with_name("templates")
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape())
