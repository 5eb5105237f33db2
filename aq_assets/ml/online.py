"""What the HTTP service keeps and runs beside the shared core: a snapshot's cleaned
histories (`readings_history`) and the forecaster on feature rows without pandas
(`OnlineForecaster`). Cleaning and features are `cleaning` and `features`, the same
functions training and batch predictions call.

Measured in process (2 shared cores, a 1,231-tree model, 10 co-located parameters,
`benchmarks/serving_cpu.py`): one series with a month of history and its co-located
parameters ~0.4 ms of CPU for the whole request, of which cleaning ~0.05 ms, the feature
row ~0.04 ms and every horizon's trees ~0.02 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aq_assets.ml.cleaning import (
    HourlySeries,
    RawSeries,
    clean_many,
    clean_series,
    location_mean,
    location_means,
    sensor_rows,
)
from aq_assets.ml.features import FeatureSpec, Origin, origin_feature_rows
from aq_assets.ml.model import RECENT_MEANS, Forecaster


def compile_kernels() -> None:
    """Compile the loops of cleaning, location means and features now (or load them from
    numba's cache), not in the first request."""
    series = clean_series(np.array([0, 3600]), np.array([1.0, 2.0]), "pm25", "µg/m³")
    location_mean([series, series])
    origin_feature_rows(FeatureSpec(), [Origin(series, {"pm10": series}, 0)])


@dataclass(frozen=True)
class SensorHistory:
    """A sensor's cleaned readings and where it stands."""

    sensor_id: int
    location_id: int
    parameter: str
    series: HourlySeries


@dataclass(frozen=True)
class ReadingsHistory:
    """Cleaned readings of several sensors: each sensor's series, and each location's mean
    series per parameter (what a target sensor's co-located parameters are read from)."""

    sensors: dict[int, SensorHistory]
    locations: dict[int, dict[str, HourlySeries]]

    def covariates_of(self, sensor_id: int) -> dict[str, HourlySeries]:
        return self.locations.get(self.sensors[sensor_id].location_id, {})


def readings_history(
    sensor_id: np.ndarray,
    location_id: np.ndarray,
    parameter: np.ndarray,
    units: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
) -> ReadingsHistory:
    """Raw readings as columns (one sensor = one parameter at one location, the first row's)
    → every sensor cleaned (`clean_many`) and every location's parameters averaged over its
    sensors (`location_means`), as `clean_readings` + `build_features` see them."""
    sensor_id = np.asarray(sensor_id, dtype=np.int64)
    groups = sensor_rows(sensor_id)
    seconds, values, units = np.asarray(seconds), np.asarray(values), np.asarray(units)
    cleaned = clean_many(
        [
            RawSeries(seconds[rows], values[rows], str(parameter[rows[0]]), units[rows])
            for rows in groups
        ]
    )
    sensors = {
        int(sensor_id[rows[0]]): SensorHistory(
            sensor_id=int(sensor_id[rows[0]]),
            location_id=int(location_id[rows[0]]),
            parameter=str(parameter[rows[0]]),
            series=clean,
        )
        for rows, clean in zip(groups, cleaned, strict=True)
    }
    locations = location_means((h.location_id, h.parameter, h.series) for h in sensors.values())
    return ReadingsHistory(sensors, locations)


class OnlineForecaster:
    """`Forecaster.predict` for rows built by `origin_features`, without pandas: every
    horizon's trees in one compiled call (`trees.TreeEnsemble`), then the forecaster's own
    blend (`BlendTable`)."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.spec = forecaster.spec
        self.horizons = tuple(forecaster.spec.horizons)
        self._forecaster = forecaster
        self._table = forecaster.blend_table()
        columns = self.spec.feature_columns
        self.level_index = columns.index("level")
        self._recent_means = [columns.index(c) for c in RECENT_MEANS if c in columns]
        self.compiled_error: str | None = None
        self._changes = self._predictor(len(columns))

    @property
    def is_baseline(self) -> bool:
        """A baseline forecaster: no trees, its blend alone forecasts."""
        return self._forecaster.is_baseline

    @property
    def compiled(self) -> bool:
        """Whether the trees run compiled (else through XGBoost, horizon by horizon)."""
        return self.compiled_error is None

    def _predictor(self, n_features: int) -> Callable[[np.ndarray], np.ndarray]:
        """float32 rows -> the boosters' changes (rows × horizons): compiled when that
        predicts exactly what `inplace_predict` of each horizon's booster does on rows that
        take every branch. A baseline forecaster (no boosters) changes nothing."""
        if self._forecaster.is_baseline:
            return self._forecaster.changes
        boosters = [self._forecaster.boosters[h] for h in self.horizons]
        try:
            from aq_assets.ml.trees import TreeEnsemble

            ensemble = TreeEnsemble.from_boosters(boosters)
            probe = ensemble.edge_rows(n_features)
            expected = np.column_stack([b.inplace_predict(probe) for b in boosters])
            if not np.array_equal(ensemble.predict(probe), expected):
                raise ValueError("its predictions differ from XGBoost's on the probe rows")
            return ensemble.predict
        except (ImportError, ValueError, KeyError) as exc:  # numba missing, a layout unknown
            self.compiled_error = f"{type(exc).__name__}: {exc}"
        return self._forecaster.changes

    def predict(
        self,
        rows: np.ndarray,
        sensor_ids: Sequence[int | None],
        origins: Sequence[int],
    ) -> np.ndarray:
        """Forecasts (n rows × horizons, float64) from feature rows (n × features, float64),
        the rows' sensors and origin hours; NaN where a row has no current level."""
        rows = np.atleast_2d(rows)
        n = rows.shape[0]
        if n == 0:
            return np.empty((0, len(self.horizons)))
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        return self._table.forecast(
            level=rows[:, self.level_index],
            changes=self._changes(matrix),
            sensor_rows=self._table.rows_of(sensor_ids),
            origin_hours=np.asarray(origins, dtype=np.int64) % 24,
            recent_means=rows[:, self._recent_means]
            if len(self._recent_means) == len(RECENT_MEANS)
            else np.full((n, len(RECENT_MEANS)), np.nan),  # a spec without them: left out
        )
