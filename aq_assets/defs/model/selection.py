"""Which forecaster a training registers, decided without MLflow: a candidate judged on
held-out days against the baselines and the champion, then the version to register (the
candidate refit on every day when it passed; the best baseline per horizon when it failed
and nothing servable exists; the refused candidate, for the record, otherwise)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from aq_assets.defs.model.gate import MIN_CHAMPION_DAYS, GateDecision, best_baselines, decide
from aq_assets.ml.backtest import backtest, origins_before
from aq_assets.ml.evaluation import Judged, evaluate, judge_candidate
from aq_assets.ml.features import FeatureSpec, drift_view
from aq_assets.ml.model import BASELINE_FORECASTS, Forecaster, baseline_forecaster

if TYPE_CHECKING:
    from aq_assets.ml.drift import DriftReference


@dataclass(frozen=True)
class Settings:
    """The gate's and the fit's settings (`ForecastModelConfig`)."""

    holdout_days: int
    validation_days: int
    baseline_tolerance: float
    champion_tolerance: float
    max_rounds: int
    coverage_tolerance: float = 0.05


@dataclass(frozen=True)
class Selection:
    """What a training decided, and the version it registers."""

    judged: Judged
    champion_scores: pd.DataFrame | None
    decision: GateDecision
    registered: Forecaster
    registered_until: pd.Timestamp  # the last hour the registered version learnt from
    registered_scores: pd.DataFrame  # its held-out scores (a baseline's for a baseline)
    note: str  # why a baseline was registered, or ""

    def learnt(self, training_set: pd.DataFrame) -> pd.DataFrame:
        """The rows the registered version learnt from."""
        if self.registered_until == training_set["datetime_utc"].max():
            return training_set
        return self.judged.before

    def drift_reference(self, training_set: pd.DataFrame, spec: FeatureSpec) -> DriftReference:
        """The version's drift reference: the days it learnt from (a sample across the whole
        window, so every season in it), and its error on days it did not (a trained
        version's is the candidate's: the same settings without those days)."""
        from aq_assets.ml.drift import drift_reference, relative_error

        learnt = self.learnt(training_set)
        holdout = self.judged.holdout
        forecast = (
            self.registered.predict(holdout)
            if self.registered.is_baseline
            else self.judged.point  # the candidate's, made when it was judged
        )
        view = drift_view(learnt, spec)
        return drift_reference(
            view,
            learnt.loc[view.index, "datetime_utc"].dt.floor("D"),
            relative_error(forecast["h1"], holdout["target_h1"]),
        )


def select(
    training_set: pd.DataFrame,
    spec: FeatureSpec,
    champion: Forecaster | None,
    champion_until: pd.Timestamp | None,
    settings: Settings,
    log: logging.Logger | logging.LoggerAdapter,
) -> Selection:
    """Judge a candidate, compare it with a comparable champion on held-out days the champion
    did not learn from (at least MIN_CHAMPION_DAYS of them), decide, and choose the version
    to register."""
    judged = judge_candidate(
        training_set, spec, settings.holdout_days, settings.validation_days, settings.max_rounds
    )
    scores, holdout = judged.scores, judged.holdout
    champion_scores = None
    if champion is not None and set(champion.spec.feature_columns) <= set(training_set.columns):
        unseen = holdout[holdout["datetime_utc"] > (champion_until or pd.Timestamp.min)]
        days = unseen["datetime_utc"].dt.floor("D").nunique()
        if days >= MIN_CHAMPION_DAYS:
            champion_scores = evaluate(
                unseen,
                {"model": judged.point.loc[unseen.index], "champion": champion.predict(unseen)},
                spec,
            )
        else:
            log.info(
                f"The champion learnt all but {days} held-out days: not compared (needs "
                f"{MIN_CHAMPION_DAYS}); the baselines are the bar."
            )
    decision = decide(
        scores,
        settings.baseline_tolerance,
        settings.champion_tolerance,
        champion_scores,
        judged.intervals,
        settings.coverage_tolerance,
        judged.daily,
    )
    trained_until = training_set["datetime_utc"].max()
    note, registered_scores = "", scores[scores.forecaster == "model"]
    if decision.passed:
        registered = judged.on_every_day(training_set)
        registered_until = trained_until
    elif champion is None:  # none, or one this code cannot load: serve the best baseline
        best = best_baselines(scores, among=BASELINE_FORECASTS)["name"]
        registered = baseline_forecaster(training_set, spec, best.to_dict())
        registered_until = trained_until
        registered_scores = pd.concat(
            [
                scores[(scores.forecaster == name) & (scores.horizon == h)]
                for h, name in best.items()
            ]
        )
        note = (
            "No usable champion and the trained model was refused, so a BASELINE "
            "forecaster is registered and promoted: "
            + ", ".join(f"{h} h {name}" for h, name in best.items())
            + ". The next training that passes the gate replaces it."
        )
        log.warning(note)
    else:  # refused: registered for the record, never promoted
        registered = judged.candidate
        registered_until = judged.before["datetime_utc"].max()
    return Selection(
        judged, champion_scores, decision, registered, registered_until, registered_scores, note
    )


def recent_backtest(
    judged: Judged, registered: Forecaster, training_set: pd.DataFrame, origins: int
) -> pd.DataFrame:
    """Scores per fortnight: the held-out days, where the candidate (trained on the days
    before them, its settings chosen on the validation days) is scored at no extra cost, and
    before them `origins` fortnights on which the registered settings (rounds, blend weights)
    are trained again on the days before each and scored (one training's fits each). The
    settings were chosen on later days, so the earlier fortnights say how steady the model is
    across recent weeks, not how it generalizes (`benchmarks/forecast_quality.py` does that)."""
    step = 14
    end = judged.holdout["datetime_utc"].min().floor("D")
    held_out = backtest(
        training_set,
        judged.candidate.spec,
        [end],
        lambda *_: judged.candidate,
        window_days=10_000,
        test_days=judged.holdout_days,
    )
    if not origins:
        return held_out
    earlier = backtest(
        training_set,
        registered.spec,
        origins_before(end, origins, step),
        lambda history, _: registered.refit(history),
        window_days=10_000,
        test_days=step,
    )
    return pd.concat([earlier, held_out], ignore_index=True)


def score_metrics(
    scores: pd.DataFrame, registered: pd.DataFrame, intervals: pd.DataFrame | None = None
) -> dict[str, float]:
    """Held-out RMSE and MAE of every forecaster (`rmse_<name>_h<h>`), and of the registered
    version (`rmse_h<h>`, `mae_h<h>`, `skill_h<h>`: the candidate's, or for a baseline
    forecaster the baseline's it forecasts; the service shows these), and the candidate's
    intervals (`coverage80_h<h>`, `width80_h<h>`, ..., `pinball_h<h>`)."""
    metrics: dict[str, float] = {}
    for row in intervals.to_dict("records") if intervals is not None else ():
        for name, value in row.items():
            if name not in ("horizon", "rows"):
                metrics[f"{name}_h{row['horizon']}"] = float(value)
    for row in scores.itertuples():
        name = "candidate" if row.forecaster == "model" else row.forecaster
        metrics[f"rmse_{name}_h{row.horizon}"] = float(row.rmse)
        metrics[f"mae_{name}_h{row.horizon}"] = float(row.mae)
    for row in registered.itertuples():
        metrics[f"rmse_h{row.horizon}"] = float(row.rmse)
        metrics[f"mae_h{row.horizon}"] = float(row.mae)
        metrics[f"skill_h{row.horizon}"] = float(row.skill)
    return metrics
