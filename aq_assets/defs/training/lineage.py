"""What a training set is and what it was built from: its content's fingerprint and its
partitions, which the training set's metadata and the model's MLflow run both record."""

import datetime
import hashlib

import numpy as np
import pandas as pd


def partitions_summary(
    first_day: datetime.date, last_day: datetime.date, sensors: list[int]
) -> str:
    """The partitions a training set was built from, short at any scale: MLflow refuses tags
    over 500 characters (66 six-digit sensor ids). Past ten sensors, their count, range and a
    digest of the list; the run keeps the whole list as `training_set/partitions.json`."""
    if len(sensors) <= 10:
        return f"day {first_day}..{last_day} × sensors {','.join(map(str, sensors))}"
    digest = hashlib.sha256(",".join(map(str, sensors)).encode()).hexdigest()[:12]
    return (
        f"day {first_day}..{last_day} × {len(sensors)} sensors {sensors[0]}..{sensors[-1]} "
        f"(list sha256 {digest})"
    )


def content_fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of the rows' content, independent of row order and of the dtypes a
    round trip through DuckDB gives (timestamp precision, text as object or string). Hashed a
    column at a time: a training set of 1,000 sensors is 2 M rows, and a canonical copy of it
    all would double the memory of the step."""
    order = np.lexsort((frame["datetime_utc"].to_numpy(), frame["sensor_id"].to_numpy()))
    digest = hashlib.sha256()
    for column in frame.columns:
        values = frame[column].iloc[order].reset_index(drop=True)
        canonical = (
            values.astype("datetime64[ns]").astype("int64")
            if pd.api.types.is_datetime64_any_dtype(values)
            else values.astype("float64")
            if pd.api.types.is_numeric_dtype(values)
            else values.astype(str)
        )
        digest.update(str(column).encode())
        digest.update(pd.util.hash_pandas_object(canonical, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
