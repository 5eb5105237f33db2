"""`aq_assets.defs.training.lineage`: the training set's content fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aq_assets.defs.training.lineage import content_fingerprint


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sensor_id": [2, 1, 1, 2],
            "datetime_utc": pd.to_datetime(["2025-01-01 00:00", "2025-01-01 01:00"] * 2),
            "y": np.array([1.5, np.nan, 3.25, 4.0], dtype=np.float32),
            "units": ["µg/m³"] * 4,
        }
    )


def test_the_fingerprint_is_of_the_content_not_its_order_or_round_trip_dtypes():
    rows = frame()
    reordered = rows.iloc[[3, 1, 0, 2]]
    # As DuckDB may read it back: microsecond timestamps, float64, text as string.
    read_back = rows.astype({"datetime_utc": "datetime64[us]", "y": "float64", "units": "string"})
    changed = rows.assign(y=rows["y"].where(rows.index != 2, 3.5))
    renamed = rows.rename(columns={"y": "value"})

    assert content_fingerprint(reordered) == content_fingerprint(rows)
    assert content_fingerprint(read_back) == content_fingerprint(rows)
    assert content_fingerprint(changed) != content_fingerprint(rows)
    assert content_fingerprint(renamed) != content_fingerprint(rows)
