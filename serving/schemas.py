"""Request and response bodies of the API. The request is read by msgspec, straight from the
bytes into typed structs (a third of pydantic's time on a month of history, and the body is
most of a request's work), and forecasts are written from typed structs (half the time of
dicts for a batch); the other responses are pydantic models. `msgspec_schemas` gives the
OpenAPI document the msgspec types' schemas.
Limits that depend on settings (rows, series) and on the loaded model (parameter, co-located
parameters) are checked in `forecasting`."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

# Physically meaningless beyond this; it also keeps every feature finite in float32.
MAX_ABS_VALUE = 1e9

Value = Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
# ISO 8601 (an offset or Z converts to UTC; none means UTC) or Unix seconds. Parsed as whole
# lists: a datetime object per reading would cost more than the whole forecast.
Timestamp = (
    Annotated[str, msgspec.Meta(max_length=64, extra_json_schema={"format": "date-time"})] | int
)
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Lists of readings stay JSON text until `readings` reads them: a Python object per reading
# would cost more than the rest of the request. Their schemas are the typed lists'.
Timestamps = Annotated[
    msgspec.Raw, msgspec.Meta(extra_json_schema=msgspec.json.schema(list[Timestamp]))
]
Values = Annotated[
    msgspec.Raw, msgspec.Meta(extra_json_schema=msgspec.json.schema(list[Value | None]))
]
READ_TIMESTAMPS = msgspec.json.Decoder(list[Timestamp])
READ_VALUES = msgspec.json.Decoder(list[Value | None])

EXAMPLE_SERIES: dict[str, Any] = {
    "sensor_id": 9001002,
    "timezone": "-06:00",
    "timestamps": ["2025-05-01T10:00:00Z", "2025-05-01T11:00:00Z", "2025-05-01T12:00:00Z"],
    "values": [12.5, None, 14.1],
    "covariates": {
        "pm10": {
            "timestamps": ["2025-05-01T11:00:00Z", "2025-05-01T12:00:00Z"],
            "values": [30.2, 31.0],
        }
    },
}


EXAMPLE_REQUEST: Any = {"series": [EXAMPLE_SERIES]}


class Readings(msgspec.Struct, forbid_unknown_fields=True):
    """Readings of one parameter: `timestamps[i]` (ISO 8601, UTC when no offset is given, or
    Unix seconds) and `values[i]` (null: no reading). Any order; readings within one hour are
    averaged; nulls, sentinels (-999, 9999...) and physically implausible values are dropped
    as the pipeline drops them."""

    timestamps: Timestamps
    values: Values
    units: Annotated[
        Name | None,
        msgspec.Meta(
            description=(
                "Units of the values; default the parameter's usual ones (µg/m³ for particles, "
                "ppm for gases, c, %). Gases in µg/m³, mg/m³ or ppb and temperature in f are "
                "converted into those (25 °C, 1 atm), as forecasts are answered in them; "
                "other spellings (ug/m3, ppbv, °F) are read as these."
            )
        ),
    ] = None


class SeriesHistory(Readings):
    """One sensor's recent history of the model's parameter, plus co-located parameters.
    Send at least the model's `history_hours` (GET /v1/model) for every feature to be
    computed as in training."""

    sensor_id: Annotated[
        Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None,
        msgspec.Meta(
            description=(
                "The sensor's OpenAQ id; a sensor the model was trained on gets its identity "
                "feature and climatology, any other is forecast without them."
            )
        ),
    ] = None
    parameter: Annotated[
        Name | None, msgspec.Meta(description="Must be the model's parameter (default: it).")
    ] = None
    timezone: Annotated[
        Annotated[str, msgspec.Meta(max_length=64)] | None,
        msgspec.Meta(
            description=(
                'The location\'s IANA zone or "+HH:MM" offset, for the calendar features (local '
                "hour and day). Default UTC."
            )
        ),
    ] = None
    origin: Annotated[
        Timestamp | None,
        msgspec.Meta(
            description=(
                "The hour to forecast from (floored to the hour); default the hour of the latest "
                "valid reading."
            )
        ),
    ] = None
    covariates: Annotated[
        dict[Name, Readings],
        msgspec.Meta(
            description=(
                "Co-located parameters by name (GET /v1/model lists the ones the model reads); "
                "absent ones are missing features, as in training. `network`: the mean per hour "
                "of the other sensors' readings of the forecast parameter in the area (cleaned "
                "as that parameter); without it the sensor is forecast as one with no "
                "neighbours. A known sensor's GET forecast reads its network from the snapshot."
            )
        ),
    ] = msgspec.field(default_factory=dict)


class ForecastRequest(msgspec.Struct, forbid_unknown_fields=True):
    series: Annotated[list[SeriesHistory], msgspec.Meta(min_length=1)]


READ_FORECAST_REQUEST = msgspec.json.Decoder(ForecastRequest)


def msgspec_schemas(ref_template: str) -> dict[str, Any]:
    """JSON Schemas of the request and answer bodies that msgspec reads and writes, and of
    the types they use, by name: FastAPI sees only pydantic models."""
    _, schemas = msgspec.json.schema_components(
        [ForecastRequest, ForecastResponse, SensorForecastResponse], ref_template=ref_template
    )
    for schema in schemas.values():  # docstrings, as pydantic shows them
        if "description" in schema:
            schema["description"] = inspect.cleandoc(schema["description"])
    schemas["ForecastRequest"]["examples"] = [EXAMPLE_REQUEST]
    return schemas


UtcTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
UNITS = msgspec.Meta(description="The units of every value and threshold.")

# An answer's parts (thousands in a batch) are built, encoded and dropped, and never hold
# each other in a cycle: untracked by the garbage collector (gc=False), they no longer set
# off a collection every few hundred.


class Quantiles(msgspec.Struct, gc=False):
    """The forecast distribution's quantiles: the value is below `q10` with probability 0.1.
    `q10`-`q90` is the 80% interval, `q05`-`q95` the 90% one."""

    q05: float | None
    q10: float | None
    q50: float | None
    q90: float | None
    q95: float | None


class Exceedance(msgspec.Struct, gc=False):
    above: Annotated[
        float, msgspec.Meta(description="A concentration (AQ_THRESHOLDS), in `units`.")
    ]
    probability: Annotated[
        float | None,
        msgspec.Meta(
            description="The chance the hour's value is above it. The guidelines these "
            "thresholds come from are for 24-hour means: an hour above is not a day above."
        ),
    ]


class HorizonForecast(msgspec.Struct, gc=False):
    horizon_hours: int
    forecast_for_utc: Annotated[UtcTime, msgspec.Meta(description="The hour the forecast is for.")]
    value: Annotated[
        float | None, msgspec.Meta(description="Forecast level; null without a current level.")
    ]
    quantiles: Annotated[
        Quantiles | None,
        msgspec.Meta(description="Null for a model registered before forecasts carried intervals."),
    ]
    exceedance: Annotated[
        list[Exceedance] | None,
        msgspec.Meta(description="One per threshold; null for a model without intervals."),
    ]
    category: Annotated[
        str | None,
        msgspec.Meta(
            description="The US EPA AQI category (2024 breakpoints) of `value` as if it lasted "
            "24 hours, as the EPA's NowCast reports an hour; null for a parameter without a "
            "scale."
        ),
    ]


class SeriesForecast(msgspec.Struct, kw_only=True):
    sensor_id: int | None
    origin_utc: Annotated[UtcTime | None, msgspec.Meta(description="The hour forecast from.")]
    level: Annotated[
        float | None,
        msgspec.Meta(
            description="The current level the forecast starts from: the latest cleaned value "
            "at most `max_fill_hours` before the origin."
        ),
    ]
    forecasts: list[HorizonForecast]
    note: Annotated[
        str | None, msgspec.Meta(description="Why forecasts are null, when they are.")
    ] = None


class ForecastResponse(msgspec.Struct, kw_only=True):
    model_name: str
    model_version: str
    parameter: str
    units: Annotated[str | None, UNITS]
    results: Annotated[
        list[SeriesForecast], msgspec.Meta(description="One per series, in request order.")
    ]


class SensorForecastResponse(SeriesForecast, kw_only=True):
    model_name: str
    model_version: str
    parameter: str
    units: Annotated[str | None, UNITS]
    location_id: int
    last_reading_utc: UtcTime | None
    snapshot_modified_utc: UtcTime
    snapshot_latest_reading_utc: Annotated[
        UtcTime | None,
        msgspec.Meta(
            description="The newest hour of any reading in the snapshot: how current it is."
        ),
    ]


class HorizonMetrics(BaseModel):
    rmse: float | None = None
    mae: float | None = None
    skill: float | None = Field(None, description="1 - RMSE / RMSE of persistence.")


class LoadError(BaseModel):
    what: str
    version: str | None
    error: str
    at: dt.datetime


class SnapshotInfo(BaseModel):
    path: str
    modified_utc: dt.datetime = Field(description="When the pipeline last wrote the snapshot.")
    latest_reading_utc: dt.datetime | None = Field(
        description="The newest hour with a reading in it: forecasts start from there."
    )
    age_hours: float | None = Field(
        description="Hours from the end of that hour to now: how far behind the data is."
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    alias: str
    version: str
    parameter: str
    kind: Literal["trained", "baseline"] = Field(
        description="`baseline`: no trained model has passed the promotion gate yet, so this "
        "version forecasts persistence or climatology per horizon."
    )
    horizons: list[int]
    history_hours: int
    covariates: list[str]
    trained_at: dt.datetime | None
    loaded_at: dt.datetime
    run_id: str | None
    mlflow_run_url: str | None
    metrics: dict[str, HorizonMetrics] = Field(description="Held-out scores by horizon (hours).")
    last_load_error: LoadError | None = Field(
        None, description="The latest failed load since this version was loaded (it kept serving)."
    )
    checked_at: dt.datetime | None = Field(None, description="Last check of the alias.")
    snapshot: SnapshotInfo | None = Field(
        None,
        description="The online_features snapshot GET forecasts start from; null before one exists.",
    )
    snapshot_error: LoadError | None = Field(
        None, description="The latest failed load of the snapshot, if the file changed since."
    )


class Problem(BaseModel):
    field: str | None = None
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[Problem] | str
