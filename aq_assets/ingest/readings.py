"""Fetching many sensor-days from a source into one frame, keeping count of what went wrong."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from aq_assets.ingest.sources.base import (
    READING_COLUMNS,
    ReadingsSource,
    Sensor,
    SourceError,
    typed_frame,
)


@dataclass
class CollectedReadings:
    """What a run fetched: rows to store, rows refused, and partitions that could not be fetched."""

    readings: pd.DataFrame
    rejected: list[str] = field(default_factory=list)
    outside_partition: pd.DataFrame = field(
        default_factory=lambda: typed_frame({}, READING_COLUMNS)
    )
    failures: dict[str, str] = field(default_factory=dict)


def collect_readings(
    source: ReadingsSource,
    sensor_days: list[tuple[Sensor, dt.date]],
    ingested_at: pd.Timestamp,
    progress: Callable[[int, int], None] | None = None,
) -> CollectedReadings:
    """Fetch every (sensor, day). Rows the source put outside their UTC day are set aside
    (storing them would break the partition's replace-on-rerun); a partition the source
    cannot answer is recorded in `failures` and the others are still fetched, so one error
    message can name them all."""
    frames: list[pd.DataFrame] = []
    rejected: list[str] = []
    failures: dict[str, str] = {}
    for done, (sensor, day) in enumerate(sensor_days, start=1):
        try:
            fetched = source.fetch_day(sensor, day)
        except SourceError as exc:
            failures[f"{day}|{sensor.sensor_id}"] = str(exc)
            continue
        if len(fetched.readings):
            frames.append(fetched.readings.assign(partition_day=pd.Timestamp(day)))
        rejected.extend(f"{day}|{sensor.sensor_id}: {line}" for line in fetched.rejected)
        if progress:
            progress(done, len(sensor_days))
    # Cast and bound-check once over everything: per sensor-day it costs more than the fetch.
    fetched_all = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"partition_day": []})
    )
    all_rows = typed_frame(fetched_all, {**READING_COLUMNS, "partition_day": "datetime64[ns]"})
    offset = all_rows["datetime_utc"] - all_rows["partition_day"]
    inside = (offset >= pd.Timedelta(0)) & (offset < pd.Timedelta(days=1))
    readings = all_rows.loc[inside, list(READING_COLUMNS)].reset_index(drop=True)
    readings["ingested_at"] = ingested_at
    return CollectedReadings(
        readings=readings,
        rejected=rejected,
        outside_partition=all_rows.loc[~inside, list(READING_COLUMNS)].reset_index(drop=True),
        failures=failures,
    )
