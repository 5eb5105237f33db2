"""The resources every stage reads, configured from the environment (see README.md)."""

import dagster as dg

from aq_assets.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
