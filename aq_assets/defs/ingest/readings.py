"""Fetching many sensor-days from a source into one frame, keeping count of what went wrong."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aq_assets.defs.ingest.sources.base import (
    READING_COLUMNS,
    ReadingsSource,
    Sensor,
    SourceError,
    SourceUnreachable,
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


def failure_summary(failures: dict[str, str], total: int, source: str, stored: int = 0) -> str:
    """Why sensor-days of a run failed: those that failed for the same reason are one line,
    and the causes (each naming its fix) come last, where a terminal leaves them in view."""
    keys_by_cause: dict[str, list[str]] = {}
    for key, cause in failures.items():
        keys_by_cause.setdefault(cause, []).append(key)
    kept = f"the other {stored} were stored" if stored else "no partition of this run was changed"
    lines = [
        f"{len(failures)} of {total} sensor-day(s) could not be fetched from {source} and keep "
        f"what they had; {kept}. Causes, by sensor-day (day|sensor):"
    ]
    for cause, keys in list(keys_by_cause.items())[:10]:
        which = keys[0] if len(keys) == 1 else f"{len(keys)}, {keys[0]} .. {keys[-1]}"
        lines.append(f"- {which}: {cause}")
    if len(keys_by_cause) > 10:
        lines.insert(1, f"(the first 10 of {len(keys_by_cause)} different causes)")
    return "\n".join(lines)


def collect_readings(
    source: ReadingsSource,
    sensor_days: list[tuple[Sensor, dt.date]],
    ingested_at: pd.Timestamp,
    progress: Callable[[int, int], None] | None = None,
) -> CollectedReadings:
    """Fetch every (sensor, day). Rows the source put outside their UTC day are set aside
    (storing them would break the partition's replace-on-rerun); a partition the source
    cannot answer is recorded in `failures` and the others are still fetched, so one error
    message can name them all; once the source is unreachable, the rest fail at once."""
    frames: list[pd.DataFrame] = []
    frame_days: list[dt.date] = []  # the partition day of each frame
    rejected: list[str] = []
    failures: dict[str, str] = {}
    for done, (sensor, day) in enumerate(sensor_days, start=1):
        try:
            fetched = source.fetch_day(sensor, day)
        except SourceUnreachable as exc:
            for later_sensor, later_day in sensor_days[done - 1 :]:
                failures[f"{later_day}|{later_sensor.sensor_id}"] = str(exc)
            break
        except SourceError as exc:
            failures[f"{day}|{sensor.sensor_id}"] = str(exc)
            continue
        if len(fetched.readings):
            frames.append(fetched.readings)
            frame_days.append(day)
        rejected.extend(f"{day}|{sensor.sensor_id}: {line}" for line in fetched.rejected)
        if progress:
            progress(done, len(sensor_days))
    # Cast, label and bound-check once over everything: per sensor-day (a cast, an `assign`)
    # it costs more than the fetch.
    fetched_all = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    fetched_all["partition_day"] = np.repeat(
        np.array(frame_days, dtype="datetime64[ns]"), [len(frame) for frame in frames]
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
