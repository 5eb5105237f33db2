"""Forecast distributions: quantiles and the chance of exceeding a threshold, from the point
forecaster's errors on days its boosters did not learn from (split-conformal residuals).

Errors are taken on a log scale, `log(y + c) - log(ŷ + c)` with `c` the typical level of the
calibration days: pollution's errors grow with its level, and relative errors are nearly
alike across levels. They are then divided by a scale that follows how unsettled the air has
been lately (locally-adaptive conformal scores): `v + v̄`, with `v` the relative variability of
the last 24 hours (`std_24 / (mean_24 + c)`, known at every forecast origin) and `v̄` its
median over the calibration rows, so that a calm day gets narrower intervals than an episode
and no row's scale falls below half the typical one. Each horizon's score distribution is kept
whole (201 quantiles), so that any quantile and any threshold's exceedance probability are read
from one table, consistently: the 0.9 quantile lies at the threshold whose exceedance
probability is 0.1. Format 4 banded the calibration rows by forecast level (up to four
tables per horizon, still read); with scaled scores one table per horizon covers better in
backtests (bands only split the rows into noisier tails), so calibration makes one.

The calibration rows are hours of a few weeks, and hours of one day share its weather: they
are far fewer independent draws than rows. Each table is therefore widened by the
finite-sample correction of split conformal for `n` exchangeable scores (a central interval of
nominal coverage `p` is read at `p (n + 1) / n`), with `n` the effective number of independent
scores: the batch-means estimate over calibration days of how much the share of scores outside
the central 80% and 90% intervals varies from day to day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)
# The central intervals the quantiles bound, by nominal coverage.
INTERVALS = {80: (0.1, 0.9), 90: (0.05, 0.95)}
MIN_CALIBRATION_ROWS = 250  # per horizon
_GRID = np.linspace(0.0, 1.0, 201)  # the probabilities each table's score quantiles sit at
# The feature columns of the recent variability that scales the scores, in this order.
RECENT_COLUMNS = ("mean_24", "std_24")


def recent_of(frame: pd.DataFrame) -> np.ndarray:
    """rows × RECENT_COLUMNS of feature rows (NaN where the spec has none)."""
    return frame.reindex(columns=list(RECENT_COLUMNS)).to_numpy(dtype="float64")


# Wider than any span of scores (a factor of e^100 is no forecast error).
_STRIDE = 1000.0


@dataclass(frozen=True)
class _Table:
    """Every (horizon, band) cell's scores, one row each, and the same laid end to end on
    one line (each cell shifted by its index × _STRIDE) for a single interpolation."""

    errors: np.ndarray  # cells × len(_GRID), non-decreasing
    first: np.ndarray  # per horizon, the index of its first band's cell
    edges: np.ndarray  # horizons × the most edges of any horizon, padded with +inf
    line: np.ndarray
    probabilities: np.ndarray
    quantile_shifts: np.ndarray  # cells × QUANTILES
    lowest: np.ndarray  # per cell, its smallest and largest score
    highest: np.ndarray

    @classmethod
    def of(cls, edges: tuple[np.ndarray, ...], errors: tuple[np.ndarray, ...]) -> _Table:
        rows = np.maximum.accumulate(np.vstack(errors), axis=1)
        padded = np.full((len(edges), max((e.size for e in edges), default=0)), np.inf)
        for j, cuts in enumerate(edges):
            padded[j, : cuts.size] = cuts
        first = np.cumsum([0, *(e.shape[0] for e in errors[:-1])])
        line = (rows + (np.arange(rows.shape[0]) * _STRIDE)[:, None]).ravel()
        shifts = np.stack([np.interp(QUANTILES, _GRID, row) for row in rows])
        probabilities = np.tile(_GRID, rows.shape[0])
        return cls(rows, first, padded, line, probabilities, shifts, rows[:, 0], rows[:, -1])


@dataclass(frozen=True)
class Intervals:
    """Per horizon: the forecast-level edges between bands, and each band's score quantiles
    (bands × len(_GRID), log scale over the row's scale); `spread` is the median recent
    variability of the calibration rows (None: scores are not scaled, as in format 4)."""

    offset: float
    edges: tuple[np.ndarray, ...]
    errors: tuple[np.ndarray, ...]
    spread: float | None = None

    @classmethod
    def calibrate(
        cls,
        forecast: np.ndarray,
        truth: np.ndarray,
        recent: np.ndarray | None = None,
        days: np.ndarray | None = None,
    ) -> Intervals | None:
        """From point forecasts and what happened (rows × horizons) on days the point model
        did not learn from, the rows' RECENT_COLUMNS (None: scores unscaled) and the day of
        each row (None: rows are taken as independent); None when a horizon has fewer than
        MIN_CALIBRATION_ROWS known pairs."""
        known = np.isfinite(forecast) & np.isfinite(truth)
        if forecast.size == 0 or (known.sum(axis=0) < MIN_CALIBRATION_ROWS).any():
            return None
        offset = float(max(np.median(np.maximum(truth[known], 0.0)), 1e-6))
        spread = None
        if recent is not None:
            variability = _variability(recent, offset)
            finite = variability[np.isfinite(variability)]
            if finite.size and np.median(finite) > 0:
                spread = float(np.median(finite))
        scale = cls(offset, (), (), spread)._scale(recent, len(forecast))
        errors = []
        for j in range(forecast.shape[1]):
            rows = known[:, j]
            level = np.maximum(forecast[rows, j], 0.0)
            error = np.log(np.maximum(truth[rows, j], 0.0) + offset) - np.log(level + offset)
            score = error / scale[rows]
            n = effective_size(score, None if days is None else days[rows])
            # Nominal p read at the level a central interval of p (n + 1) / n sits at.
            widened = np.clip(0.5 + (_GRID - 0.5) * (n + 1) / n, 0.0, 1.0)
            errors.append(np.quantile(score, widened)[None, :])
        no_edges = tuple(np.empty(0) for _ in errors)  # one table per horizon
        return cls(offset, no_edges, tuple(errors), spread)

    def quantiles(
        self,
        forecast: np.ndarray,
        levels: Sequence[float] = QUANTILES,
        recent: np.ndarray | None = None,
    ) -> np.ndarray:
        """rows × horizons × levels: the forecast quantiles (NaN where the forecast is), for
        rows with RECENT_COLUMNS `recent` (None or NaN: a typical variability)."""
        return self._quantiles(*self._cells(forecast, recent), levels)

    def exceedance(
        self,
        forecast: np.ndarray,
        thresholds: Sequence[float],
        recent: np.ndarray | None = None,
    ) -> np.ndarray:
        """rows × horizons × thresholds: the probability that the hour's value exceeds each
        threshold (NaN where the forecast is), for rows with RECENT_COLUMNS `recent`."""
        return self._exceedance(*self._cells(forecast, recent), thresholds)

    def both(
        self, forecast: np.ndarray, thresholds: Sequence[float], recent: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`quantiles` at QUANTILES and `exceedance`, placing each forecast once."""
        cells = self._cells(forecast, recent)
        return self._quantiles(*cells, QUANTILES), self._exceedance(*cells, thresholds)

    def _quantiles(
        self, cell: np.ndarray, base: np.ndarray, scale: np.ndarray, levels: Sequence[float]
    ) -> np.ndarray:
        table = self._table
        shifts = (
            table.quantile_shifts
            if tuple(levels) == QUANTILES
            else np.stack([np.interp(levels, _GRID, row) for row in table.errors])
        )
        logs = base[:, :, None] + scale[:, None, None] * shifts[cell]
        return np.maximum(np.exp(logs) - self.offset, 0.0)

    def _exceedance(
        self, cell: np.ndarray, base: np.ndarray, scale: np.ndarray, thresholds: Sequence[float]
    ) -> np.ndarray:
        table = self._table
        logs = np.log(np.maximum(np.asarray(thresholds, dtype=np.float64), 0.0) + self.offset)
        scores = (logs[None, None, :] - base[:, :, None]) / scale[:, None, None]
        # One interpolation for every cell: each cell's scores are moved to their own stretch
        # of the line (cell × _STRIDE), and each score clipped into its cell's stretch.
        low, high = table.lowest[cell][:, :, None], table.highest[cell][:, :, None]
        x = np.clip(scores, low, high) + (cell * _STRIDE)[:, :, None]
        below = np.interp(x.ravel(), table.line, table.probabilities).reshape(scores.shape)
        return 1.0 - np.where(scores < low, 0.0, np.where(scores >= high, 1.0, below))

    def _cells(
        self, forecast: np.ndarray, recent: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row and horizon: the (horizon, band) cell of `_table.errors` its forecast
        falls in and the log of the forecast (NaN where it is unknown); per row, its scale."""
        level = np.maximum(forecast, 0.0)
        bands = (self._table.edges[None, :, :] <= level[:, :, None]).sum(axis=2)
        cell = self._table.first[None, :] + bands
        return cell, np.log(level + self.offset), self._scale(recent, len(forecast))

    @cached_property
    def _table(self) -> _Table:
        return _Table.of(self.edges, self.errors)

    def _scale(self, recent: np.ndarray | None, rows: int) -> np.ndarray:
        """Each row's score scale: its recent variability plus the typical one (a row without
        one: twice the typical); ones when scores are not scaled."""
        if self.spread is None:
            return np.ones(rows)
        if recent is None:
            return np.full(rows, 2.0 * self.spread)
        variability = _variability(recent, self.offset)
        return np.where(np.isfinite(variability), variability, self.spread) + self.spread

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "edges": [e.tolist() for e in self.edges],
            "errors": [e.tolist() for e in self.errors],
            "spread": self.spread,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Intervals:
        spread = state.get("spread")
        return cls(
            float(state["offset"]),
            tuple(np.asarray(e, dtype=np.float64) for e in state["edges"]),
            tuple(np.asarray(e, dtype=np.float64).reshape(-1, _GRID.size) for e in state["errors"]),
            None if spread is None else float(spread),
        )


def _variability(recent: np.ndarray, offset: float) -> np.ndarray:
    """The relative variability of the last 24 hours, `std_24 / (mean_24 + offset)`."""
    recent = np.asarray(recent, dtype=np.float64).reshape(-1, len(RECENT_COLUMNS))
    return np.maximum(recent[:, 1], 0.0) / (np.maximum(recent[:, 0], 0.0) + offset)


def effective_size(score: np.ndarray, days: np.ndarray | None) -> float:
    """How many independent scores `score` is worth: for the central 80% and 90% intervals,
    the share of scores outside varies between days (batch means) as that of n independent
    scores would; the smaller n, at most the number of scores. Without days: the number of
    scores."""
    if days is None or score.size < 2:
        return float(max(score.size, 1))
    sizes = []
    for nominal in INTERVALS:
        low, high = np.quantile(score, [0.5 - nominal / 200, 0.5 + nominal / 200])
        outside = ((score < low) | (score > high)).astype(np.float64)
        share = outside.mean()
        by_day = pd.Series(outside).groupby(np.asarray(days)).mean()
        spread = float(by_day.var(ddof=1)) if len(by_day) > 1 else share * (1 - share)
        sizes.append(len(by_day) * share * (1 - share) / max(spread, 1e-12))
    return float(min(max(min(sizes), 1.0), score.size))


def interval_scores(
    intervals: Intervals, forecast: np.ndarray, truth: np.ndarray, recent: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Per row and horizon (NaN where the forecast or the truth is unknown): whether each
    central interval covers the truth (`covered80`, `covered90`: 1 or 0), its width, and the
    pinball loss averaged over QUANTILES; rows with RECENT_COLUMNS `recent`."""
    quantiles = intervals.quantiles(forecast, QUANTILES, recent)
    known = np.isfinite(forecast) & np.isfinite(truth)
    scores = {}
    for nominal, (low, high) in INTERVALS.items():
        lower = quantiles[:, :, QUANTILES.index(low)]
        upper = quantiles[:, :, QUANTILES.index(high)]
        scores[f"covered{nominal}"] = np.where(known, (truth >= lower) & (truth <= upper), np.nan)
        scores[f"width{nominal}"] = np.where(known, upper - lower, np.nan)
    gaps = truth[:, :, None] - quantiles
    levels = np.asarray(QUANTILES)
    pinball = np.maximum(levels * gaps, (levels - 1) * gaps).mean(axis=2)
    scores["pinball"] = np.where(known, pinball, np.nan)
    return scores
