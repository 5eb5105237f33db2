"""Jobs of the ingest stage."""

from dagster import AssetSelection, define_asset_job

from aq_assets.partitions import reading_partitions

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets("raw_readings"),
    partitions_def=reading_partitions,
    description="Readings for a set of sensor-days; the CLI's `aq backfill` runs it in large chunks.",
)

catalog_job = define_asset_job(
    "catalog_job",
    selection=AssetSelection.assets("sensor_catalog"),
    description="Discover sensors and register new ones as partitions.",
)
