"""Keeping the sensor catalog: what the source offers now, merged with what it offered before."""

from __future__ import annotations

import pandas as pd

from aq_assets.defs.ingest.sources.base import CATALOG_COLUMNS, Sensor, SourceError, typed_frame

CATALOG_TABLE_COLUMNS: dict[str, str] = {
    **CATALOG_COLUMNS,
    "active": "bool",
    "discovered_at": "datetime64[ns]",
}


def merge_catalog(
    previous: pd.DataFrame | None, offered: pd.DataFrame, now: pd.Timestamp
) -> pd.DataFrame:
    """The new catalog: every sensor offered now (active), plus sensors known before that the
    source no longer lists (inactive, so their stored partitions stay readable). A sensor keeps
    the time it was first discovered."""
    offered = typed_frame(offered, CATALOG_COLUMNS).drop_duplicates("sensor_id", keep="last")
    current = offered.assign(active=True, discovered_at=now)
    if previous is None or previous.empty:
        return typed_frame(current, CATALOG_TABLE_COLUMNS).sort_values(
            "sensor_id", ignore_index=True
        )
    previous = typed_frame(previous, CATALOG_TABLE_COLUMNS)
    first_discovered = previous.set_index("sensor_id")["discovered_at"]
    current["discovered_at"] = current["sensor_id"].map(first_discovered).fillna(now)
    gone = previous[~previous["sensor_id"].isin(current["sensor_id"])].assign(active=False)
    merged = pd.concat([current, gone], ignore_index=True)
    return typed_frame(merged, CATALOG_TABLE_COLUMNS).sort_values("sensor_id", ignore_index=True)


def sensors_by_id(catalog: pd.DataFrame, sensor_ids: list[int]) -> dict[int, Sensor]:
    """The catalog's entry for each id; an id the catalog does not know is a clear error."""
    known = catalog.set_index("sensor_id")
    unknown = sorted(set(sensor_ids) - set(known.index))
    if unknown:
        raise SourceError(
            f"Sensor(s) {unknown} are not in ingest.sensor_catalog; materialize `sensor_catalog` "
            "for the configured AQ_LOCATIONS/AQ_PARAMETER first."
        )
    return {
        sid: Sensor(
            sensor_id=sid,
            location_id=int(known.at[sid, "location_id"]),
            parameter=str(known.at[sid, "parameter"]),
            units=str(known.at[sid, "units"]),
            timezone=str(known.at[sid, "timezone"])
            if pd.notna(known.at[sid, "timezone"])
            else "UTC",
        )
        for sid in sensor_ids
    }


def timezones_of(catalog: pd.DataFrame) -> dict[int, str]:
    """Each location's time zone (IANA name or fixed offset) from the sensor catalog."""
    return dict(zip(catalog["location_id"], catalog["timezone"], strict=True))


def location_names_of(catalog: pd.DataFrame) -> dict[int, str]:
    """Each location's name from the sensor catalog (a location without one is left out)."""
    named = catalog.dropna(subset=["location_name"])
    named = named[named["location_name"].astype(str).str.strip() != ""]
    return {
        int(location): str(name).strip()
        for location, name in zip(named["location_id"], named["location_name"], strict=True)
    }
