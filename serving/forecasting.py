"""Requests to forecasts: validate what depends on settings and on the loaded model, read
the lists of readings (`readings`), clean and featurize each history with
`aq_assets.ml.cleaning` and `aq_assets.ml.features` (the functions training calls), predict
every series of a request in one call of the trees, and encode the answer."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

import msgspec
import numpy as np

from aq_assets.ml.cleaning import (
    DEFAULT_UNITS,
    LaidSeries,
    clean_laid,
    laid_end_to_end,
    location_mean,
    series_of,
)
from aq_assets.ml.features import (
    NETWORK,
    FeatureSpec,
    SensorSeries,
    check_timezone,
    origin_feature_rows,
)
from aq_assets.ml.forecasting import Outlook
from serving.champion import LoadedModel
from serving.errors import ApiError, invalid
from serving.readings import read_timestamps, read_values, seconds
from serving.schemas import (
    READ_FORECAST_REQUEST,
    Exceedance,
    ForecastRequest,
    ForecastResponse,
    HorizonForecast,
    Quantiles,
    Readings,
    SensorForecastResponse,
    SeriesForecast,
)
from serving.settings import Settings
from serving.snapshot import OnlineSnapshot

SECONDS_PER_HOUR = 3600
_EPOCH = dt.datetime(1970, 1, 1)


def compile_kernels() -> None:
    """Compile every loop a request runs (or load them from numba's cache), so that no
    request waits for it."""
    read_timestamps(
        [("timestamps", msgspec.Raw(b'["2025-01-01T00:00:00Z","2025-01-01T01:00:00Z"]'))]
    )
    read_values([("values", msgspec.Raw(b"[1.5,null]"))])
    (series,) = series_of(
        clean_laid(np.array([0, 3600]), np.array([1.0, 2.0]), np.array([0, 2]), ["pm25"], ["µg/m³"])
    )
    location_mean([series, series])
    origin_feature_rows(FeatureSpec(), [SensorSeries(series, {"pm10": series})], [0])


def read_request(body: bytes) -> ForecastRequest:
    """The body as a ForecastRequest, or a 422 naming the first thing wrong (JSON path)."""
    try:
        return READ_FORECAST_REQUEST.decode(body)
    except msgspec.ValidationError as exc:
        error = invalid(str(exc))
        error.field = _with_covariate_names(error.field, body)
        raise error from None
    except msgspec.DecodeError as exc:
        raise _json_error(exc, body) from None
    except RecursionError:  # msgspec's depth limit, e.g. `{"a":` a thousand times
        raise _too_deep() from None


def _too_deep() -> ApiError:
    return ApiError(
        422,
        "body",
        "Invalid JSON: nested too deeply; a forecast request is at most four levels deep",
        "json_invalid",
    )


def _json_error(exc: msgspec.DecodeError, body: bytes) -> ApiError:
    return ApiError(422, "body", _invalid_json(str(exc), body), "json_invalid")


def _with_covariate_names(field: str, body: bytes) -> str:
    """msgspec says `covariates[...]` for a value of the dict: name the one that fails."""
    if "[...]" not in field:
        return field
    try:
        node: Any = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        # The covariates are skipped as raw JSON, which lets NaN and Infinity through the
        # first read; whole-document JSON errors come first.
        raise _json_error(exc, body) from None
    except RecursionError:
        raise _too_deep() from None
    out: list[str] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+|\.\.\.)\]", field):
        if index == "...":
            if not isinstance(node, dict):
                return field
            name = next((k for k, v in node.items() if not _valid_readings(v)), None)
            if name is None:
                return field
        if name:
            node = node.get(name) if isinstance(node, dict) else None
            out.append(f".{name}" if out else name)
        else:
            node = node[int(index)] if isinstance(node, list) else None
            out.append(f"[{index}]")
    return "".join(out)


def _valid_readings(value: Any) -> bool:
    """Whether `value` (decoded JSON) reads as Readings: through JSON again, since its lists
    are read as raw JSON, which `msgspec.convert` cannot make from Python objects."""
    try:
        READ_READINGS.decode(msgspec.json.encode(value))
    except msgspec.ValidationError:
        return False
    return True


READ_READINGS = msgspec.json.Decoder(Readings)


def _invalid_json(message: str, body: bytes) -> str:
    at = re.search(r"\(byte (\d+)\)", message)
    if at and body[int(at.group(1)) :].lstrip(b"-").startswith((b"NaN", b"Infinity")):
        return (
            "Invalid JSON: NaN and Infinity are not JSON numbers, send null for no reading "
            + at.group(0)
        )
    return f"Invalid JSON: {message}"


Histories = tuple[list[tuple[SensorSeries, int | None]], LaidSeries | None]


def histories(request: ForecastRequest, model: LoadedModel, settings: Settings) -> Histories:
    """The request's series, checked against the limits and the model, then cleaned, each
    with its origin (epoch hours; None: the latest valid reading's hour); and their targets
    laid end to end as cleaning left them, when they are (no co-located parameters)."""
    spec = model.spec
    if len(request.series) > settings.max_series:
        raise ApiError(
            413,
            "series",
            f"{len(request.series)} series in one request; at most {settings.max_series} "
            "(AQ_API_MAX_SERIES)",
            "too_many_series",
        )
    parts: list[tuple[str, Readings, str]] = []  # (JSON path, readings, their parameter)
    for i, series in enumerate(request.series):
        at = f"series[{i}]"
        if series.parameter is not None and series.parameter != spec.parameter:
            raise ApiError(
                422,
                f"{at}.parameter",
                f"the model forecasts {spec.parameter!r}, not {series.parameter!r}",
                "value_error",
            )
        try:
            check_timezone(series.timezone)
        except ValueError as exc:
            raise ApiError(422, f"{at}.timezone", str(exc), "value_error") from None
        parts.append((at, series, spec.parameter))
        for name, readings in series.covariates.items():
            if name not in spec.covariates:
                raise ApiError(
                    422,
                    f"{at}.covariates.{name}",
                    f"not a co-located parameter the model reads; it reads {list(spec.covariates)}",
                    "value_error",
                )
            # The network is read as the other sensors' readings of the target parameter.
            parameter = spec.parameter if name == NETWORK else name
            parts.append((f"{at}.covariates.{name}", readings, parameter))
    stamps = read_timestamps([(f"{at}.timestamps", r.timestamps) for at, r, _ in parts])
    values = read_values([(f"{at}.values", r.values) for at, r, _ in parts])
    n, n_values = stamps.counts, values.counts
    wrong = (n > settings.max_history_rows) | (n != n_values)
    if wrong.any():
        k = int(np.argmax(wrong))
        _check_shape(int(n[k]), int(n_values[k]), parts[k][0], settings)
    laid = clean_laid(
        stamps.items,
        values.items,
        stamps.offsets,
        [parameter for _, _, parameter in parts],
        [r.units or DEFAULT_UNITS.get(parameter, "") for _, r, parameter in parts],
    )
    cleaned = iter(series_of(laid))
    out = []
    for i, series in enumerate(request.series):
        target = next(cleaned)
        covariates = {name: next(cleaned) for name in series.covariates}
        if spec.parameter in covariates:  # the location's mean includes the target sensor
            covariates[spec.parameter] = location_mean([target, covariates[spec.parameter]])
        origin = None
        if series.origin is not None:
            origin_seconds = seconds([series.origin], f"series[{i}].origin", indexed=False)
            origin = int(origin_seconds[0] // SECONDS_PER_HOUR)
        out.append(
            (
                SensorSeries(
                    target, covariates, series.sensor_id, None, series.timezone, spec.parameter
                ),
                origin,
            )
        )
    return out, laid if len(parts) == len(out) else None


def _check_shape(n: int, n_values: int, at: str, settings: Settings) -> None:
    if n > settings.max_history_rows:
        raise ApiError(
            413,
            f"{at}.timestamps",
            f"{n} readings; at most {settings.max_history_rows} per series and parameter "
            "(AQ_API_MAX_HISTORY_ROWS)",
            "too_many_rows",
        )
    if n_values != n:
        raise ApiError(
            422,
            f"{at}.values",
            f"{n_values} values for {n} timestamps; they go in pairs",
            "value_error",
        )


def forecast(
    model: LoadedModel,
    items: list[tuple[SensorSeries, int | None]],
    targets: LaidSeries | None = None,
) -> list[SeriesForecast]:
    """One result per sensor, in order, from its origin (None: its latest valid reading's
    hour): every feature row in one pass, every row through the model in one call.
    `targets`: the sensors' target series laid end to end, if they already are."""
    spec = model.spec
    sensors = [item for item, _ in items]
    if targets is None:
        targets = laid_end_to_end([sensor.target for sensor in sensors])
    latest = _latest_hours(targets)
    origins = [
        last if origin is None else origin for (_, origin), last in zip(items, latest, strict=True)
    ]
    results = [
        SeriesForecast(sensor_id=item.sensor_id, origin_utc=_iso(origin), level=None, forecasts=[])
        for item, origin in zip(sensors, origins, strict=True)
    ]
    # A series without readings has no row whatever its origin: 0 stands for none.
    rows, valid = origin_feature_rows(
        spec, sensors, [0 if origin is None else origin for origin in origins], targets
    )
    done = [(i, origins[i]) for i in np.flatnonzero(valid).tolist()]
    if len(done) < len(items):
        for i in np.flatnonzero(~valid).tolist():
            results[i].note = (
                "no valid reading (all null, sentinel, implausible or spikes)"
                if not len(sensors[i].target)
                else "the origin is before the first valid reading"
            )
    if not done:
        return results
    rows = rows[valid]
    predicted = model.forecaster.predict(
        rows, [sensors[i].sensor_id for i, _ in done], [origin for _, origin in done]
    )
    levels = _numbers(rows[:, model.forecaster.level_index])
    horizons = model.forecaster.horizons
    forecasts = horizon_forecasts(
        predicted,
        Outlook.of(
            model.forecaster.intervals,
            spec.parameter,
            predicted,
            model.thresholds,
            model.forecaster.recent(rows),
        ),
        model.thresholds,
        [_isos_ahead(origin, horizons) for _, origin in done],
        horizons,
    )
    for (i, _), level, result_forecasts in zip(done, levels, forecasts, strict=True):
        result = results[i]
        result.level = level
        result.forecasts = result_forecasts
        if level is None:
            result.note = (
                f"no valid reading within {spec.max_fill_hours} h before the origin: no "
                "current level to forecast from"
            )
    return results


def horizon_forecasts(
    predicted: np.ndarray,
    outlook: Outlook,
    thresholds: Sequence[float],
    stamps: list[tuple[str | None, ...]],
    horizons: tuple[int, ...],
) -> list[list[HorizonForecast]]:
    """Each row's forecasts (`predicted`: rows × horizons), built a column at a time: a batch
    makes thousands of these, and one Python call per number would cost more than its trees.
    NaN is written as null."""
    n, m = predicted.shape
    flat = n * m
    quantiles: list[Quantiles | None] = [None] * flat
    exceedance: list[list[Exceedance] | None] = [None] * flat
    if outlook.quantiles is not None:
        quantiles = list(map(Quantiles, *outlook.quantiles.reshape(flat, -1).T.tolist()))
    if outlook.exceedance is not None:
        by_threshold = [
            map(Exceedance, repeat(t), column)
            for t, column in zip(
                thresholds, outlook.exceedance.reshape(flat, -1).T.tolist(), strict=True
            )
        ]
        exceedance = (
            list(map(list, zip(*by_threshold, strict=True)))
            if by_threshold
            else [[] for _ in range(flat)]
        )
    categories = (
        [None] * flat if outlook.categories is None else outlook.categories.ravel().tolist()
    )
    entries = list(
        map(
            HorizonForecast,
            horizons * n,
            list(chain.from_iterable(stamps)),
            predicted.ravel().tolist(),
            quantiles,
            exceedance,
            categories,
        )
    )
    return [entries[k : k + m] for k in range(0, flat, m)]


def request_answer(model: LoadedModel, request: ForecastRequest, settings: Settings) -> bytes:
    """The whole POST /v1/forecast: checks, cleaning, features, forecasts, JSON."""
    return encode(
        ForecastResponse(
            model_name=model.name,
            model_version=model.version,
            parameter=model.spec.parameter,
            units=DEFAULT_UNITS.get(model.spec.parameter),
            results=forecast(model, *histories(request, model, settings)),
        )
    )


class SensorAnswers:
    """GET answers by sensor for one (model, snapshot) pair. Both are immutable and swapped
    as wholes, so an answer stays right until either is replaced; each request files its
    answer under the pair it computed with, so a swap never serves a stale one."""

    def __init__(self) -> None:
        self._pair: tuple[LoadedModel | None, OnlineSnapshot | None, dict[int, bytes]] = (
            None,
            None,
            {},
        )

    def get(self, model: LoadedModel, snapshot: OnlineSnapshot, sensor_id: int) -> bytes:
        cached_model, cached_snapshot, answers = self._pair
        if cached_model is not model or cached_snapshot is not snapshot:
            answers = {}
            self._pair = (model, snapshot, answers)
        answer = answers.get(sensor_id)
        if answer is None:
            answer = answers[sensor_id] = sensor_answer(model, snapshot, sensor_id)
        return answer


def sensor_answer(model: LoadedModel, snapshot: OnlineSnapshot, sensor_id: int) -> bytes:
    """GET /v1/sensors/{id}/forecast from the snapshot's latest readings of the sensor."""
    spec = model.spec
    sensor = snapshot.history.sensors.get(sensor_id)
    # The snapshot keeps only readings with a location.
    if sensor is None or sensor.parameter != spec.parameter or sensor.location_id is None:
        raise ApiError(
            404,
            "sensor_id",
            f"sensor {sensor_id} is not a {spec.parameter} sensor of the online_features snapshot",
            "unknown_sensor",
        )
    location = sensor.location_id
    zone_error = snapshot.timezone_errors.get(location)
    if zone_error is not None:  # the pipeline's data, not the request, is at fault
        raise ApiError(503, "sensor_id", f"online_features: {zone_error}", "snapshot_error")
    (result,) = forecast(model, [(sensor, None)])
    last = int(sensor.target.hours[-1]) if len(sensor.target) else None
    return encode(
        SensorForecastResponse(
            model_name=model.name,
            model_version=model.version,
            parameter=spec.parameter,
            units=DEFAULT_UNITS.get(spec.parameter),
            location_id=location,
            last_reading_utc=_iso(last),
            snapshot_modified_utc=_utc(snapshot.modified_at),
            snapshot_latest_reading_utc=None
            if snapshot.latest_reading_at is None
            else _utc(snapshot.latest_reading_at),
            **msgspec.structs.asdict(result),
        )
    )


def encode(payload: Any) -> bytes:
    """Compact JSON, by msgspec (~5x json.dumps); NaN and infinities are written as null."""
    return msgspec.json.encode(payload)


def _numbers(values: np.ndarray) -> list[Any]:
    """`values.tolist()` with None in place of NaN and infinities: one conversion for the
    whole array, not a call per number."""
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return list(out.tolist())


def _utc(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _latest_hours(targets: LaidSeries) -> list[int | None]:
    """Each laid series' latest hour (None: it has no readings), in one lookup for all."""
    hours, _, offsets = targets
    ends = offsets[1:]
    present = (ends > offsets[:-1]).tolist()
    last = hours[np.maximum(ends - 1, 0)].tolist() if hours.size else present
    return [hour if has else None for hour, has in zip(last, present, strict=True)]


@lru_cache(maxsize=8192)
def _isos_ahead(origin: int, horizons: tuple[int, ...]) -> tuple[str | None, ...]:
    """`_iso` of each hour `horizons` ahead of `origin`: one lookup a series."""
    return tuple(_iso(origin + h) for h in horizons)


@lru_cache(maxsize=8192)
def _iso(hour: int | None) -> str | None:
    if hour is None:
        return None
    return (_EPOCH + dt.timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
