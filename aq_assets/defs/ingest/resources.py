"""Which `ReadingsSource` the code location uses, chosen by `AQ_SOURCE`."""

from __future__ import annotations

from aq_assets.defs.ingest.sources.base import ReadingsSource
from aq_assets.settings import SettingError, env_number, env_or_default, env_value

SOURCES = ("simulated", "openaq", "archive")


def build_source(kind: str | None = None) -> ReadingsSource:
    """The configured source. The class is picked when the code location loads; its settings
    (`AQ_LOCATIONS`, `AQ_PARAMETER`, keys, roots) are read at run time through `EnvVar`."""
    kind = (kind or env_value("AQ_SOURCE", "simulated")).strip().lower()
    parameter = env_or_default("AQ_PARAMETER", "pm25")
    locations = env_or_default("AQ_LOCATIONS", "")
    if kind == "simulated":
        from aq_assets.defs.ingest.sources.simulated import SimulatedSource

        return SimulatedSource(
            parameter=parameter,
            locations=locations,
            drift=env_or_default("AQ_SIM_DRIFT", ""),
            target_only=env_value("AQ_SIM_TARGET_ONLY", "").strip().lower() in ("1", "true"),
        )
    if kind == "archive":
        from aq_assets.defs.ingest.sources.archive import ArchiveSource

        return ArchiveSource(
            parameter=parameter,
            locations=locations,
            root=env_or_default("AQ_ARCHIVE_ROOT", "https://openaq-data-archive.s3.amazonaws.com"),
        )
    if kind == "openaq":
        from aq_assets.defs.ingest.sources.openaq import OpenAQSource

        return OpenAQSource(
            parameter=parameter,
            locations=locations,
            coordinates=env_or_default("AQ_COORDINATES", ""),
            radius_m=int(env_number("AQ_RADIUS_M", "12000", minimum=1, whole=True)),
            bbox=env_or_default("AQ_BBOX", ""),
            country=env_or_default("AQ_COUNTRY", ""),
            api_key=env_or_default("OPENAQ_API_KEY", ""),
            base_url=env_or_default("OPENAQ_BASE_URL", "https://api.openaq.org"),
            measurements=env_or_default("OPENAQ_MEASUREMENTS", "hourly"),
            max_wait_s=env_number("OPENAQ_MAX_WAIT_S", "300", minimum=0),
            state_dir=env_or_default("OPENAQ_STATE_DIR", ""),
        )
    raise SettingError(f"AQ_SOURCE={kind!r} is not a source; use one of {', '.join(SOURCES)}.")
