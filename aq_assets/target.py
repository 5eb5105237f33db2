"""What aq forecasts: the one configuration every stage after ingest reads."""

from __future__ import annotations

from dagster import ConfigurableResource

from aq_assets.ml import air_quality
from aq_assets.ml.features import FeatureSpec


class ForecastTarget(ConfigurableResource):
    """One parameter (`AQ_PARAMETER`, the one the source discovers locations by) forecast at
    these hours ahead (`AQ_HORIZONS`, comma-separated), with the probability of exceeding
    these concentrations (`AQ_THRESHOLDS`, comma-separated; empty: the parameter's defaults,
    `air_quality.DEFAULT_THRESHOLDS`)."""

    parameter: str = "pm25"
    horizons: str = "1,3,6,12,24"
    thresholds: str = ""

    def exceedance_thresholds(self) -> tuple[float, ...]:
        return air_quality.thresholds(self.parameter, self.thresholds)

    def spec(self) -> FeatureSpec:
        """The feature spec of this target, before training fixes its sensors."""
        try:
            hours = sorted({int(h) for h in self.horizons.split(",") if h.strip()})
        except ValueError:
            hours = []
        if not hours or hours[0] < 1:
            raise ValueError(
                f"AQ_HORIZONS={self.horizons!r}: expected hours ahead as positive integers "
                "separated by commas, e.g. 1,3,6,12,24"
            )
        return FeatureSpec(parameter=self.parameter, horizons=tuple(hours))
