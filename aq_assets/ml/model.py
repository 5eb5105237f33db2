"""The forecaster: one XGBoost booster per horizon, trained on a time-ordered split.

Each booster predicts the CHANGE from the current level (`target - level`), not the level.
Pollution is heavy-tailed and persistent: a tree model of levels cannot reach values beyond
those it saw and pulls every episode toward the mean, while a model of changes starts from
persistence and learns when and how the series departs from it (the morning rise, the
evening decay, the slide back after an episode).

Far ahead, the best guess drifts from "now" toward "what this hour usually looks like at the
current level": each horizon's booster is blended with the sensor's daily shape times its last
24 hours' mean, with one weight per horizon fitted by least squares on the validation days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aq_assets.ml.features import FeatureSpec, feature_matrix

# Saved forecasters carry this; 2 = climatology stored as a daily shape (ratio to the mean).
FORMAT = 2

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


@dataclass(frozen=True)
class TimeSplit:
    """Train before `validation_start`, validate (early stopping) until `holdout_start`,
    hold out the rest. Nothing is shuffled."""

    validation_start: pd.Timestamp
    holdout_start: pd.Timestamp

    @classmethod
    def last_days(cls, times: pd.Series, holdout_days: int, validation_days: int) -> TimeSplit:
        end = times.max().floor("D") + pd.Timedelta(days=1)
        holdout_start = end - pd.Timedelta(days=holdout_days)
        return cls(holdout_start - pd.Timedelta(days=validation_days), holdout_start)

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
    """Boosters by horizon, the climatology they are blended with, and the feature spec."""

    spec: FeatureSpec
    boosters: dict[int, Any] = field(default_factory=dict)
    best_iterations: dict[int, int] = field(default_factory=dict)
    climatology_weights: dict[int, float] = field(default_factory=dict)
    climatology: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast columns `h{h}` (the level h hours after each row's hour), NaN where the
        row has no current level to start from."""
        matrix = feature_matrix(frame, self.spec)
        level = frame["level"].to_numpy(dtype="float64")
        out = {}
        for h, booster in self.boosters.items():
            change = booster.inplace_predict(matrix) if len(frame) else np.empty(0)
            out[f"h{h}"] = self._blend(level + change, frame, h)
        return pd.DataFrame(out, index=frame.index)

    def _blend(self, forecast: np.ndarray, frame: pd.DataFrame, h: int) -> np.ndarray:
        weight = self.climatology_weights.get(h, 0.0)
        if weight == 0.0 or self.climatology.empty:
            return forecast
        usual = hour_climatology(self.climatology, frame, h)
        return np.where(np.isnan(usual), forecast, (1 - weight) * forecast + weight * usual)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "spec.json").write_text(self.spec.to_json())
        state = {
            "format": FORMAT,
            "best_iterations": self.best_iterations,
            "climatology_weights": self.climatology_weights,
            "climatology": [[int(s), int(hr), float(v)] for (s, hr), v in self.climatology.items()],
        }
        (directory / "forecaster.json").write_text(json.dumps(state))
        for h, booster in self.boosters.items():
            booster.save_model(str(directory / f"booster_h{h}.ubj"))

    @classmethod
    def load(cls, directory: Path) -> Forecaster:
        import xgboost as xgb

        spec = FeatureSpec.from_json((directory / "spec.json").read_text())
        boosters = {}
        for h in spec.horizons:
            booster = xgb.Booster(model_file=str(directory / f"booster_h{h}.ubj"))
            booster.set_param({"nthread": 1})
            boosters[h] = booster
        state = json.loads((directory / "forecaster.json").read_text())
        if state.get("format") != FORMAT:
            raise ValueError(
                f"{directory} holds a forecaster of format {state.get('format')}, this code reads "
                f"format {FORMAT}: retrain (aq train) to register a current version."
            )
        climatology = pd.Series(
            [v for _, _, v in state["climatology"]],
            index=pd.MultiIndex.from_tuples(
                [(s, hr) for s, hr, _ in state["climatology"]], names=["sensor_id", "hour"]
            ),
            dtype="float64",
        )
        return cls(
            spec=spec,
            boosters=boosters,
            best_iterations={int(k): v for k, v in state["best_iterations"].items()},
            climatology_weights={int(k): v for k, v in state["climatology_weights"].items()},
            climatology=climatology,
        )


def climatology_of(frame: pd.DataFrame) -> pd.Series:
    """Each sensor's daily shape: its mean by UTC hour of day over `frame`, divided by its
    overall mean (1.0 = an average hour)."""
    hours = frame.groupby(["sensor_id", frame["datetime_utc"].dt.hour])["y"].mean()
    overall = frame.groupby("sensor_id")["y"].mean()
    table = (hours / hours.index.get_level_values("sensor_id").map(overall).to_numpy()).dropna()
    table.index.names = ["sensor_id", "hour"]
    return table.replace([np.inf, -np.inf], np.nan).dropna()


def hour_climatology(climatology: pd.Series, frame: pd.DataFrame, h: int) -> np.ndarray:
    """What the target hour (row hour + h) usually looks like at the current level: the daily
    shape at that hour times the last 24 hours' mean. Unlike a fixed climatology it follows a
    change of level within a day, so it does not pull forecasts back to a regime that ended."""
    keys = pd.MultiIndex.from_arrays([frame["sensor_id"], (frame["datetime_utc"].dt.hour + h) % 24])
    shape = climatology.reindex(keys).to_numpy(dtype="float64")
    return shape * frame["mean_24"].to_numpy(dtype="float64")


def fit_blend_weight(forecast: np.ndarray, usual: np.ndarray, truth: np.ndarray) -> float:
    """The w in [0, 1] minimizing the squared error of (1-w)*forecast + w*usual."""
    ok = ~(np.isnan(forecast) | np.isnan(usual) | np.isnan(truth))
    gap = usual[ok] - forecast[ok]
    denominator = float(np.dot(gap, gap))
    if denominator == 0.0:
        return 0.0
    return float(np.clip(np.dot(truth[ok] - forecast[ok], gap) / denominator, 0.0, 1.0))


def train_forecaster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    spec: FeatureSpec,
    params: dict[str, Any] | None = None,
    max_rounds: int = 3000,
    early_stopping_rounds: int = 80,
) -> Forecaster:
    """One booster per horizon on rows with a current level and a known target."""
    import xgboost as xgb

    params = {**DEFAULT_PARAMS, **(params or {})}
    feature_types = ["c" if c == "sensor_code" else "q" for c in spec.feature_columns]
    forecaster = Forecaster(spec=spec)
    for h in spec.horizons:
        sets = []
        for part in (train, validation):
            rows = part[part["level"].notna() & part[f"target_h{h}"].notna()]
            if rows.empty:
                raise ValueError(
                    f"No rows with a level and a {h} h target in a split; widen the window."
                )
            sets.append(
                xgb.DMatrix(
                    feature_matrix(rows, spec),
                    label=(rows[f"target_h{h}"] - rows["level"]).to_numpy(),
                    feature_names=spec.feature_columns,
                    feature_types=feature_types,
                    enable_categorical=True,
                    nthread=params["nthread"],
                )
            )
        booster = xgb.train(
            params,
            sets[0],
            num_boost_round=max_rounds,
            evals=[(sets[1], "validation")],
            early_stopping_rounds=early_stopping_rounds,
            verbose_eval=False,
        )
        # Keep only the trees up to the best validation round.
        best = booster.best_iteration
        forecaster.boosters[h] = booster[: best + 1]
        forecaster.best_iterations[h] = best + 1

    # Blend weights, one per horizon, fitted on validation against the climatology the model
    # will blend with (training and validation days). A train-only climatology is older and
    # worse than the one used later, and validation flatters boosters early-stopped on it:
    # both pushed the fitted weights well below what held-out data wanted.
    unblended = forecaster.predict(validation)
    forecaster.climatology = climatology_of(pd.concat([train, validation]))
    for h in spec.horizons:
        usual = hour_climatology(forecaster.climatology, validation, h)
        truth = validation[f"target_h{h}"].to_numpy(dtype="float64")
        forecaster.climatology_weights[h] = fit_blend_weight(
            unblended[f"h{h}"].to_numpy(), usual, truth
        )
    return forecaster
