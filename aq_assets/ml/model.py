"""The forecaster: one XGBoost booster per horizon, trained on a time-ordered split.

Each booster predicts the CHANGE from the current level (`target - level`), not the level.
Pollution is heavy-tailed and persistent: a tree model of levels cannot reach values beyond
those it saw and pulls every episode toward the mean, while a model of changes starts from
persistence and learns when and how the series departs from it (the morning rise, the
evening decay, the slide back after an episode).

Where the boosters have little to add (far ahead, or with little to learn from), the forecast
moves toward simpler ones: each horizon's is blended with persistence, the hour-of-day
climatology and the daily shape at the current day's or week's level, by non-negative weights
(at most 1 in all) fitted on the validation days. The registered forecaster is trained again on
every day with the rounds and weights chosen there, so it learns the newest days.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aq_assets.ml.cleaning import lowest_plausible
from aq_assets.ml.features import FeatureSpec, feature_matrix
from aq_assets.ml.intervals import Intervals, recent_of

# Saved forecasters carry this; 3 = blend weights per horizon and component, sensor means;
# 4 = forecast intervals; 5 = interval scores scaled by the recent variability; 6 = the
# `rhythm` component (code that reads at most 5 refuses it rather than drop its weight); 7 =
# the spec's relative columns (`FeatureSpec.relative`; code that reads at most 6 would not
# know the field). Format 3 still loads, without intervals, and format 4 with its unscaled
# intervals; 3-6 load without relative columns.
FORMAT = 7
READABLE_FORMATS = (3, 4, 5, 6, 7)

# What each horizon's booster forecast is blended with: the current level (persistence), the
# sensor's mean at the target hour of day (climatology), the daily shape at the target hour
# times the mean of the last 24 hours (usual) or of the last week (weekly), and the current
# level carried along the daily shape from the origin's hour to the target's (rhythm).
BLEND_COMPONENTS = ("persistence", "climatology", "usual", "weekly", "rhythm")
# The daily shape's ratio `rhythm` moves the level by stays within these: an hour whose mean
# is near zero would otherwise multiply the level by anything.
RHYTHM_LIMITS = (0.2, 5.0)
_PERSISTENCE, _RHYTHM = BLEND_COMPONENTS.index("persistence"), BLEND_COMPONENTS.index("rhythm")
# The feature columns the shape is scaled by, for `usual` and `weekly` (a spec without one
# leaves that component out).
RECENT_MEANS = ("mean_24", "mean_168")
# The baselines a forecaster with no boosters can be (same-hour-yesterday needs a lag the
# features do not keep at every horizon).
BASELINE_FORECASTS = ("persistence", "climatology")

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    # Shallow, heavily-regularized trees: a few months of a few sensors is little data, and on
    # the Mexico City benchmark deeper trees lost to climatology at 12 h and 24 h.
    "eta": 0.03,
    "max_depth": 4,
    "min_child_weight": 50,
    "subsample": 0.7,
    "colsample_bytree": 0.6,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_cat_to_onehot": 1,
    "nthread": 1,  # two shared cores: one thread trains as fast and never starves the rest
}

# A booster fit learns from at most this many rows (a uniform seeded sample of the usable rows
# when there are more), and early stopping, the blend weights and the intervals are fitted on
# at most MAX_VALIDATION_ROWS: a fit's time grows with its rows and its rounds, and past a few
# hundred thousand rows the trees hardly change, while 1,000 sensors × 90 days (2 M rows) took
# hours on one thread. Above a year of 20 sensors (175,200 rows) and every real set in
# ../shared/data, so those learn from every row.
MAX_FIT_ROWS = 200_000
MAX_VALIDATION_ROWS = 50_000  # 20 sensors × 28 validation and held-out days are 13,440
SAMPLE_SEED = 0
# A network of more sensors than this is fitted as a large one (`booster_params`,
# `feature_types`): its fits learn from MAX_FIT_ROWS rows sampled across many sensors. Every
# real set in ../shared/data has at most 10 sensors (the simulated year 20): fitted as before.
LARGE_NETWORK = 100
# A large network's fits take 3x the step (a third of the rounds, same held-out skill at
# 1,000 sensors: benchmarks/README.md), and `sensor_code` is a number there, not a category
# whose every split sorts 1,000 sensors' gradient sums (a fit 1.4x slower).
LARGE_NETWORK_PARAMS: dict[str, Any] = {"eta": 0.1}


@dataclass(frozen=True)
class TimeSplit:
    """Train before `validation_start`, validate (early stopping) until `holdout_start`,
    hold out the rest. Nothing is shuffled."""

    validation_start: pd.Timestamp
    holdout_start: pd.Timestamp

    @classmethod
    def last_days(cls, times: pd.Series, holdout_days: int, validation_days: int) -> TimeSplit:
        """The last `holdout_days` days that have a time in `times` held out, the
        `validation_days` such days before them for validation: the days of a gap (a sensor
        offline) count for nothing, so a gap at the end of a window still leaves each part
        days of readings to be judged on."""
        days = pd.DatetimeIndex(times.dt.floor("D").unique()).sort_values()
        if days.empty:
            raise ValueError("No readings to learn from or judge on; widen the window.")

        def start_of_last(count: int) -> pd.Timestamp:
            return days[-count] if count <= len(days) else days[0] - pd.Timedelta(days=1)

        return cls(start_of_last(holdout_days + validation_days), start_of_last(holdout_days))

    def parts(
        self, frame: pd.DataFrame, max_horizon: int
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(train, validation, holdout). A row's targets lie up to `max_horizon` hours ahead,
        so rows whose targets reach into the next part are purged: no split learns from the
        hours a later split is judged on."""
        t = frame["datetime_utc"]
        reach = pd.Timedelta(hours=max_horizon)
        train = frame[t + reach < self.validation_start]
        validation = frame[(t >= self.validation_start) & (t + reach < self.holdout_start)]
        return train, validation, frame[t >= self.holdout_start]


@dataclass
class Forecaster:
    """Boosters by horizon, what they are blended with, and the feature spec. A forecaster
    with no boosters is a baseline forecaster: its blend alone (persistence or climatology
    per horizon) makes the forecast."""

    spec: FeatureSpec
    boosters: dict[int, Any] = field(default_factory=dict)
    best_iterations: dict[int, int] = field(default_factory=dict)
    blend_weights: dict[int, dict[str, float]] = field(default_factory=dict)
    climatology: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    sensor_means: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    intervals: Intervals | None = None  # None: too few calibration rows, or format 3

    @property
    def is_baseline(self) -> bool:
        return not self.boosters

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast columns `h{h}` (the level h hours after each row's hour), NaN where the
        row has no current level to start from."""
        table = self.blend_table()
        level, sensor_rows, hours, recent_means = table.inputs(frame)
        changes = self.changes(feature_matrix(frame, self.spec))
        forecast = table.forecast(level, changes, sensor_rows, hours, recent_means)
        return pd.DataFrame(
            {f"h{h}": forecast[:, j] for j, h in enumerate(self.spec.horizons)}, index=frame.index
        )

    def changes(self, matrix: np.ndarray) -> np.ndarray:
        """The boosters' changes from the current level (rows × horizons, float32); zeros
        for a baseline forecaster."""
        out = np.zeros((matrix.shape[0], len(self.spec.horizons)), dtype=np.float32)
        if matrix.shape[0]:
            for j, h in enumerate(self.spec.horizons):
                if h in self.boosters:
                    out[:, j] = self.boosters[h].inplace_predict(matrix)
        return out

    def blend_table(self) -> BlendTable:
        return BlendTable.of(self)

    def refit(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Forecaster:
        """The same forecaster (rounds, blend weights) trained again on every row of `frame`:
        what is registered, so it has learnt the newest days."""
        rounds = self.best_iterations
        fitted = (
            by_horizon(
                # the longest fits first, so the last to start is a short one
                sorted(rounds, key=rounds.__getitem__, reverse=True),
                lambda h: _train_booster(frame, self.spec, h, params, rounds=rounds[h]),
            )
            if self.boosters
            else {}
        )
        boosters = {h: fitted[h] for h in rounds if h in fitted}
        return Forecaster(
            spec=self.spec,
            boosters=boosters,
            best_iterations=dict(self.best_iterations),
            blend_weights={h: dict(w) for h, w in self.blend_weights.items()},
            climatology=climatology_of(frame),
            sensor_means=sensor_means_of(frame),
            intervals=self.intervals,
        )

    def blended_on(self, *frames: pd.DataFrame) -> Forecaster:
        """A copy of this forecaster with each horizon's blend weights fitted on the rows of
        `frames` (days its boosters did not learn from)."""
        rows = _judging_rows(frames)
        table = self.blend_table()
        level, sensor_rows, hours, recent_means = table.inputs(rows)
        model = level[:, None] + self.changes(feature_matrix(rows, self.spec))
        components = table.components(level, sensor_rows, hours, recent_means)
        weights = {}
        for j, h in enumerate(self.spec.horizons):
            fitted = fit_blend_weights(
                model[:, j], components[:, j, :], rows[f"target_h{h}"].to_numpy(dtype="float64")
            )
            weights[h] = {
                c: float(w) for c, w in zip(BLEND_COMPONENTS, fitted, strict=True) if w > 0
            }
        return replace(self, blend_weights=weights)

    def calibrated(self, *frames: pd.DataFrame) -> Forecaster:
        """A copy of this forecaster with intervals from its errors on the rows of `frames`
        (days it did not learn from)."""
        rows = _judging_rows(frames)
        forecast = self.predict(rows).to_numpy()
        truth = rows[self.spec.target_columns].to_numpy("float64")
        days = rows["datetime_utc"].dt.floor("D").to_numpy()
        intervals = Intervals.calibrate(forecast, truth, recent_of(rows), days)
        return replace(self, intervals=intervals)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "spec.json").write_text(self.spec.to_json())
        state = {
            "format": FORMAT,
            "best_iterations": self.best_iterations,
            "blend_weights": self.blend_weights,
            "climatology": [[int(s), int(hr), float(v)] for (s, hr), v in self.climatology.items()],
            "sensor_means": [[int(s), float(v)] for s, v in self.sensor_means.items()],
            "intervals": self.intervals.to_dict() if self.intervals else None,
        }
        (directory / "forecaster.json").write_text(json.dumps(state))
        for h, booster in self.boosters.items():
            booster.save_model(str(directory / f"booster_h{h}.ubj"))

    @classmethod
    def load(cls, directory: Path) -> Forecaster:
        import xgboost as xgb

        spec = FeatureSpec.from_json((directory / "spec.json").read_text())
        state = json.loads((directory / "forecaster.json").read_text())
        if state.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"{directory} holds a forecaster of format {state.get('format')}, this code reads "
                f"format {FORMAT}: retrain (aq train) to register a current version."
            )
        paths = {h: directory / f"booster_h{h}.ubj" for h in spec.horizons}
        present = [h for h, path in paths.items() if path.exists()]
        if present and len(present) < len(paths):  # a baseline forecaster has none
            missing = sorted(set(paths) - set(present))
            raise ValueError(f"{directory} lacks the boosters of horizons {missing}: retrain.")
        boosters = {}
        for h in present:
            booster = xgb.Booster(model_file=str(paths[h]))
            booster.set_param({"nthread": 1})
            boosters[h] = booster
        climatology = pd.Series(
            [v for _, _, v in state["climatology"]],
            index=pd.MultiIndex.from_tuples(
                [(s, hr) for s, hr, _ in state["climatology"]], names=["sensor_id", "hour"]
            ),
            dtype="float64",
        )
        sensor_means = pd.Series(
            {int(s): float(v) for s, v in state["sensor_means"]}, dtype="float64"
        )
        return cls(
            spec=spec,
            boosters=boosters,
            best_iterations={int(k): v for k, v in state["best_iterations"].items()},
            blend_weights={int(k): v for k, v in state["blend_weights"].items()},
            climatology=climatology,
            sensor_means=sensor_means,
            intervals=Intervals.from_dict(state["intervals"]) if state.get("intervals") else None,
        )


@dataclass(frozen=True)
class BlendTable:
    """A forecaster's blend as arrays: each known sensor's daily shape (a row of 24 hours) and
    mean, the last row all NaN for sensors it does not know, and the weights (horizons ×
    components). The one implementation of the blend, for batch and online forecasts."""

    horizons: np.ndarray
    sensor_row: dict[int, int]
    shapes: np.ndarray
    means: np.ndarray
    weights: np.ndarray
    used: tuple[int, ...]  # the components some horizon has a weight for
    floor: float  # the lowest value a forecast takes

    @classmethod
    def of(cls, forecaster: Forecaster) -> BlendTable:
        sensors = sorted({int(sensor) for sensor, _ in forecaster.climatology.index})
        sensor_row = {sensor: i for i, sensor in enumerate(sensors)}
        shapes = np.full((len(sensors) + 1, 24), np.nan)
        for (sensor, hour), value in forecaster.climatology.items():
            shapes[sensor_row[int(sensor)], int(hour)] = float(value)
        means = np.full(len(sensors) + 1, np.nan)
        for sensor, value in forecaster.sensor_means.items():
            if int(sensor) in sensor_row:
                means[sensor_row[int(sensor)]] = float(value)
        horizons = forecaster.spec.horizons
        weights = np.array(
            [
                [forecaster.blend_weights.get(h, {}).get(c, 0.0) for c in BLEND_COMPONENTS]
                for h in horizons
            ],
            dtype=np.float64,
        ).reshape(len(horizons), len(BLEND_COMPONENTS))
        used = tuple(int(k) for k in np.flatnonzero(weights.any(axis=0)))
        return cls(
            np.array(horizons, dtype=np.int64),
            sensor_row,
            shapes,
            means,
            weights,
            used,
            lowest_plausible(forecaster.spec.parameter),
        )

    def inputs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the blend reads from feature rows: level, table row of each sensor, origin
        hour (UTC) and RECENT_MEANS (NaN where the spec has none)."""
        return (
            frame["level"].to_numpy(dtype="float64"),
            self.rows_of(frame["sensor_id"].to_numpy()),
            frame["datetime_utc"].dt.hour.to_numpy(dtype=np.int64),
            frame.reindex(columns=list(RECENT_MEANS)).to_numpy(dtype="float64"),
        )

    def rows_of(self, sensor_ids: Any) -> np.ndarray:
        """The table row of each sensor id (None or unknown: the NaN row)."""
        unknown = len(self.sensor_row)
        if not (isinstance(sensor_ids, np.ndarray) and sensor_ids.dtype.kind in "iu"):
            # A request's few sensors: a dict lookup each is cheaper than any array work.
            return np.array(
                [
                    unknown if s is None else self.sensor_row.get(int(s), unknown)
                    for s in sensor_ids
                ],
                dtype=np.int64,
            )
        if not unknown:
            return np.zeros(len(sensor_ids), dtype=np.int64)
        known = np.fromiter(self.sensor_row, dtype=np.int64, count=unknown)  # sorted
        at = np.searchsorted(known, sensor_ids).clip(max=unknown - 1)
        return np.where(known[at] == sensor_ids, at, unknown)

    def components(
        self,
        level: np.ndarray,
        sensor_rows: np.ndarray,
        origin_hours: np.ndarray,
        recent_means: np.ndarray,
        which: tuple[int, ...] = tuple(range(len(BLEND_COMPONENTS))),
    ) -> np.ndarray:
        """rows × horizons × `which` of BLEND_COMPONENTS at each target hour, from the rows'
        level and RECENT_MEANS; NaN where a component is unknown."""
        target_hours = (origin_hours[:, None] + self.horizons[None, :]) % 24
        shape = self.shapes[sensor_rows[:, None], target_hours]
        # What the daily shape is scaled by, for the components that scale it.
        scales = {
            "climatology": self.means[sensor_rows],
            "usual": recent_means[:, 0],
            "weekly": recent_means[:, 1],
        }
        out = np.empty((*shape.shape, len(which)))
        for j, k in enumerate(which):
            if k == _PERSISTENCE:
                out[:, :, j] = level[:, None]
            elif k == _RHYTHM:  # the level times the shape's ratio, target hour / origin's
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = shape / self.shapes[sensor_rows, origin_hours][:, None]
                out[:, :, j] = level[:, None] * np.clip(ratio, *RHYTHM_LIMITS)
            else:
                out[:, :, j] = shape * scales[BLEND_COMPONENTS[k]][:, None]
        return out

    def forecast(
        self,
        level: np.ndarray,
        changes: np.ndarray,
        sensor_rows: np.ndarray,
        origin_hours: np.ndarray,
        recent_means: np.ndarray,
    ) -> np.ndarray:
        """rows × horizons: the booster's forecast (level + change) moved toward each
        component by its weight, `model + Σ w (component − model)`; a component that is
        unknown for a row is left out of that row's blend. Never below the parameter's lowest
        plausible value (zero for a pollutant): cleaning clips every reading there, so a
        forecast under it is only further from any."""
        model = level[:, None] + changes  # float64 level + float32 change
        if self.used and len(level):
            components = self.components(level, sensor_rows, origin_hours, recent_means, self.used)
            model = blend(model, components, self.weights[:, self.used])
        return np.maximum(model, self.floor, out=model)  # NaN stays NaN


def blend(model: np.ndarray, components: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`model + Σ_k w[h, k] (components[..., k] − model)` over the components known per row."""
    gaps = components - model[:, :, None]
    gaps[np.isnan(gaps)] = 0.0  # an unknown component (or model) moves nothing
    out = model.copy()
    for k in range(components.shape[2]):  # element by element: a row alone or in a batch
        out += weights[None, :, k] * gaps[:, :, k]  # gives the same bits
    return out


def climatology_of(frame: pd.DataFrame) -> pd.Series:
    """Each sensor's daily shape: its mean by UTC hour of day over `frame`, divided by its
    overall mean (1.0 = an average hour)."""
    hours = frame.groupby(["sensor_id", frame["datetime_utc"].dt.hour])["y"].mean()
    overall = sensor_means_of(frame)
    table = (hours / hours.index.get_level_values("sensor_id").map(overall).to_numpy()).dropna()
    table.index.names = ["sensor_id", "hour"]
    return table.replace([np.inf, -np.inf], np.nan).dropna()


def sensor_means_of(frame: pd.DataFrame) -> pd.Series:
    """Each sensor's mean level over `frame`: times its daily shape, its climatology."""
    return frame.groupby("sensor_id")["y"].mean()


def fit_blend_weights(model: np.ndarray, components: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Weights w >= 0 with Σ w <= 1 minimizing the squared error of
    `model + Σ w (component − model)` on the rows where everything is known (non-negative
    least squares, scaled back onto the simplex if it oversteps)."""
    from scipy.optimize import nnls

    ok = ~(np.isnan(model) | np.isnan(truth) | np.isnan(components).any(axis=1))
    if ok.sum() < components.shape[1] + 1:
        return np.zeros(components.shape[1])
    gaps = components[ok] - model[ok, None]
    weights, _ = nnls(gaps, truth[ok] - model[ok])
    total = weights.sum()
    return weights / total if total > 1 else weights


def days_at_most_a_quarter(times: pd.Series, days: int) -> int:
    """`days`, or a quarter of the days that have a time in `times` if that is less (at
    least one): a split of a short history still leaves most of it to learn from."""
    return max(1, min(days, times.dt.floor("D").nunique() // 4))


def baseline_forecaster(
    frame: pd.DataFrame, spec: FeatureSpec, choice: dict[int, str]
) -> Forecaster:
    """A forecaster with no boosters that forecasts, per horizon, the baseline `choice[h]`
    names (persistence or climatology, from the rows of `frame`)."""
    unknown = set(choice.values()) - set(BASELINE_FORECASTS)
    if unknown:
        raise ValueError(f"A baseline forecaster is one of {BASELINE_FORECASTS}, not {unknown}.")
    return Forecaster(
        spec=spec,
        blend_weights={h: {choice[h]: 1.0} if choice[h] != "persistence" else {} for h in choice},
        climatology=climatology_of(frame),
        sensor_means=sensor_means_of(frame),
    ).calibrated(frame)


def usable_rows(frame: pd.DataFrame, h: int, cap: int) -> pd.DataFrame:
    """The rows of `frame` a booster of horizon `h` learns from (a current level and a known
    target), at most `cap` of them (`sampled`). Only the chosen rows are copied."""
    positions = np.flatnonzero(
        frame["level"].notna().to_numpy() & frame[f"target_h{h}"].notna().to_numpy()
    )
    return frame.iloc[positions[sampled(len(positions), cap)]]


def _judging_rows(frames: tuple[pd.DataFrame, ...]) -> pd.DataFrame:
    """The rows of `frames` a blend or the intervals are fitted on: at most
    MAX_VALIDATION_ROWS of them (`at_most`)."""
    return at_most(pd.concat(frames) if len(frames) > 1 else frames[0], MAX_VALIDATION_ROWS)


def at_most(frame: pd.DataFrame, cap: int) -> pd.DataFrame:
    """`frame`, or `cap` of its rows (`sampled`) when it has more."""
    return frame if len(frame) <= cap else frame.iloc[sampled(len(frame), cap)]


def sampled(n: int, cap: int) -> np.ndarray:
    """Positions 0..n-1, or a uniform sample of `cap` of them (seeded, in order) when n > cap."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, cap, replace=False))


def fit_workers() -> int:
    """How many boosters are fitted at once: OMP_NUM_THREADS when it is set (the tests and
    the containers set 1), else the machine's cores. Each fit is single-threaded (`nthread`
    1), so the boosters are the same whatever this is."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(value)) if value.isdigit() else len(os.sched_getaffinity(0))


def by_horizon(horizons: Iterable[int], fit: Callable[[int], Any]) -> dict[int, Any]:
    """`fit(h)` for each horizon, `fit_workers()` at a time in threads (XGBoost releases the
    GIL while it trains), keyed in the order of `horizons`."""
    horizons = list(horizons)
    workers = min(fit_workers(), len(horizons))
    if workers <= 1:
        return {h: fit(h) for h in horizons}
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(horizons, pool.map(fit, horizons), strict=True))


def is_large_network(spec: FeatureSpec) -> bool:
    return len(spec.sensors) > LARGE_NETWORK


def booster_params(spec: FeatureSpec) -> dict[str, Any]:
    """The booster parameters of a forecaster of `spec`: DEFAULT_PARAMS, with
    LARGE_NETWORK_PARAMS over them for a large network."""
    return {**DEFAULT_PARAMS, **(LARGE_NETWORK_PARAMS if is_large_network(spec) else {})}


def feature_types(spec: FeatureSpec) -> list[str]:
    """XGBoost's type of each feature column: all numbers but `sensor_code`, a category
    unless the network is large."""
    category = "q" if is_large_network(spec) else "c"
    return [category if c == "sensor_code" else "q" for c in spec.feature_columns]


def _train_booster(
    rows: pd.DataFrame,
    spec: FeatureSpec,
    h: int,
    params: dict[str, Any] | None,
    rounds: int,
    validation: pd.DataFrame | None = None,
    early_stopping_rounds: int = 80,
) -> Any:
    """The booster of horizon `h` on the rows with a current level and a known target (at
    most MAX_FIT_ROWS of them, `usable_rows`), `rounds` rounds (or fewer, early-stopped on
    `validation`)."""
    import xgboost as xgb

    params = {**booster_params(spec), **(params or {})}
    types = feature_types(spec)

    def matrix(part: pd.DataFrame, cap: int) -> Any:
        usable = usable_rows(part, h, cap)
        if usable.empty:
            raise ValueError(
                f"No rows with a level and a {h} h target in a split: the training set holds "
                "too few days with readings. Ingest more days (aq backfill) or widen "
                "training_set's window_days."
            )
        return xgb.DMatrix(
            feature_matrix(usable, spec),
            label=(usable[f"target_h{h}"] - usable["level"]).to_numpy(),
            feature_names=spec.feature_columns,
            feature_types=types,
            enable_categorical=True,
            nthread=params["nthread"],
        )

    if validation is None:
        return xgb.train(
            params, matrix(rows, MAX_FIT_ROWS), num_boost_round=rounds, verbose_eval=False
        )
    booster = xgb.train(
        params,
        matrix(rows, MAX_FIT_ROWS),
        num_boost_round=rounds,
        evals=[(matrix(validation, MAX_VALIDATION_ROWS), "validation")],
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    # Keep only the trees up to the best validation round.
    return booster[: booster.best_iteration + 1]


def train_forecaster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: FeatureSpec,
    params: dict[str, Any] | None = None,
    max_rounds: int = 3000,
    early_stopping_rounds: int = 80,
) -> Forecaster:
    """One booster per horizon on `train`, early-stopped on `validation`, and the blend
    weights fitted on `validation` against the climatology of `train` (what the model would
    have known then)."""
    forecaster = Forecaster(
        spec=spec, climatology=climatology_of(train), sensor_means=sensor_means_of(train)
    )
    boosters = by_horizon(
        spec.horizons,
        lambda h: _train_booster(
            train, spec, h, params, max_rounds, validation, early_stopping_rounds
        ),
    )
    for h, booster in boosters.items():
        forecaster.boosters[h] = booster
        forecaster.best_iterations[h] = booster.num_boosted_rounds()
    forecaster = forecaster.blended_on(validation)
    # The boosters did not learn the validation days (only their rounds and the blend were
    # chosen there): their errors there are what the intervals are made of.
    return forecaster.calibrated(validation)
