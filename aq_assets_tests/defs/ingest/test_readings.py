"""collect_readings: many sensor-days into one frame, each row judged against its own day."""

import datetime as dt

import pandas as pd

from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.base import (
    READING_COLUMNS,
    DayReadings,
    ReadingsSource,
    Sensor,
    SourceError,
    typed_frame,
)

SENSOR = Sensor(sensor_id=1002, location_id=1, parameter="pm25", units="µg/m³", timezone="UTC")


class UnevenSource(ReadingsSource):
    """Day n of March 2025 answers with a different shape: n hours of its own day, an empty
    day, a failure, or its own hours plus one of the next day."""

    @property
    def name(self) -> str:
        return "uneven"

    def list_sensors(self) -> pd.DataFrame:
        raise NotImplementedError

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        if day.day == 3:
            raise SourceError("day 3 is down")
        hours = {2: 0, 4: 5}.get(day.day, day.day)
        times = list(pd.date_range(str(day), periods=hours, freq="h"))
        if day.day == 4:  # a stray: the first hour of the next day
            times.append(pd.Timestamp(day) + pd.Timedelta(days=1))
        frame = {
            "sensor_id": sensor.sensor_id,
            "location_id": sensor.location_id,
            "parameter": sensor.parameter,
            "units": sensor.units,
            "datetime_utc": times,
            "value": [float(day.day)] * len(times),
            "source": self.name,
        }
        return DayReadings(readings=typed_frame(frame, READING_COLUMNS))


def test_each_row_is_kept_or_set_aside_by_its_own_partition_day():
    days = [dt.date(2025, 3, d) for d in (1, 2, 3, 4, 5)]
    now = pd.Timestamp("2025-03-10")
    collected = collect_readings(UnevenSource(), [(SENSOR, day) for day in days], now)

    readings = collected.readings
    assert readings.groupby(readings["datetime_utc"].dt.day)["value"].agg(["count", "max"]).to_dict(
        "index"
    ) == {1: {"count": 1, "max": 1.0}, 4: {"count": 5, "max": 4.0}, 5: {"count": 5, "max": 5.0}}
    assert (readings["ingested_at"] == now).all()
    assert list(readings.columns) == [*READING_COLUMNS, "ingested_at"]
    # The stray hour of day 4 sits inside day 5: only its partition day tells them apart.
    stray = collected.outside_partition
    assert stray["datetime_utc"].tolist() == [pd.Timestamp("2025-03-05")]
    assert stray["value"].tolist() == [4.0]
    assert collected.failures == {"2025-03-03|1002": "day 3 is down"}


def test_nothing_fetched_is_an_empty_typed_frame():
    collected = collect_readings(UnevenSource(), [(SENSOR, dt.date(2025, 3, 2))], pd.Timestamp(0))

    assert collected.readings.empty
    assert collected.outside_partition.empty
    assert dict(collected.readings.dtypes.astype(str)) == {
        **READING_COLUMNS,
        "ingested_at": "datetime64[ns]",
    }
