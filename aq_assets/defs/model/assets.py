"""`forecast_model` (trained, judged, registered in MLflow) and `champion_model` (the alias)."""

import datetime
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AutomationCondition,
    Config,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from aq_assets.defs.ingest.sources.base import ReadingsSource
from aq_assets.defs.model.gate import (
    GATE,
    MIN_CHAMPION_DAYS,
    best_baselines,
    decide,
    gate_result,
)
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.training.assets import content_fingerprint
from aq_assets.ml.backtest import backtest, origins_before, origins_table, pooled_rmse
from aq_assets.ml.evaluation import evaluate, judge_candidate, scores_table
from aq_assets.ml.features import FeatureSpec, drift_view
from aq_assets.ml.model import (
    BASELINE_FORECASTS,
    BLEND_COMPONENTS,
    DEFAULT_PARAMS,
    Forecaster,
    baseline_forecaster,
    fit_forecaster,
)
from aq_assets.settings import env_value

# How old the model may get before it shows as stale and is retrained; read at load.
MODEL_MAX_AGE = datetime.timedelta(days=float(env_value("AQ_MODEL_MAX_AGE_DAYS", "7")))

GATE_TAG = "aq.gate"
TRAINED_UNTIL_TAG = "aq.trained_until"  # the last hour a version learnt from
KIND_TAG = "aq.kind"  # "trained", or "baseline" for a forecaster without boosters


class ForecastModelConfig(Config):
    holdout_days: int = 14
    """Final days held out to judge the candidate and the baselines on the same rows."""
    validation_days: int = 14
    """Days before the end of what a fit learns from, used to choose its boosting rounds and
    blend weights."""
    baseline_tolerance: float = 0.03
    """How much worse than the best baseline (relative RMSE) the candidate may be at a horizon
    and still pass. In the backtests a model better than every baseline pooled is still worse
    than the best one at some horizon on some fortnights: the 90th percentile of its worst
    horizon's ratio is 1.03 (benchmarks/README.md)."""
    champion_tolerance: float = 0.05
    """How much worse than the champion (relative RMSE) a new model may be and still pass.
    Retraining on nearly the same data moves a horizon's RMSE by 2-3%, so a tighter bound
    refuses equivalent models at random."""
    max_rounds: int = 3000
    """Upper bound on boosting rounds per horizon (early stopping usually ends sooner)."""
    backtest_origins: int = 1
    """Fortnights before the held-out days on which the registered model's settings are
    backtested (trained again on the days before each, scored on it; each costs about a third
    of the training time): the table is logged to MLflow. 0 skips it;
    `benchmarks/forecast_quality.py` backtests a whole dataset."""


@asset(
    group_name="model",
    ins={"training_set": AssetIn()},
    check_specs=[GATE],
    freshness_policy=FreshnessPolicy.time_window(fail_window=MODEL_MAX_AGE),
    automation_condition=AutomationCondition.eager(),
    kinds={"xgboost", "mlflow"},
)
def forecast_model(
    context: AssetExecutionContext,
    config: ForecastModelConfig,
    training_set: pd.DataFrame,
    source: ReadingsSource,
    mlflow_tracking: MLflowTracking,
) -> MaterializeResult:
    """An XGBoost forecaster of the next 1-24 hours blended with persistence and
    climatology, registered as a new version of `aq-forecast` in MLflow: its boosting rounds
    and blend weights chosen on the last validation days, then trained on every day of the
    training set. Before that, a candidate trained without the last held-out days is judged on
    them against persistence, same-hour-yesterday, hour-of-day climatology and the current
    champion (on the days the champion never saw). When there is no usable champion and the
    candidate is refused, the best baseline per horizon is registered and promoted instead, so
    there is always a forecast to serve."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    from aq_assets.ml.drift import drift_reference, relative_error

    spec = FeatureSpec.of_training_set(training_set, source.parameter)
    fingerprint = content_fingerprint(training_set)
    trained_until = training_set["datetime_utc"].max()
    champion_version = mlflow_tracking.champion_version()
    champion, champion_until = None, None
    if champion_version is not None:
        try:
            champion = mlflow_tracking.load_forecaster(champion_version)
            until = mlflow_tracking.version_tags(champion_version).get(TRAINED_UNTIL_TAG)
            champion_until = pd.Timestamp(until) if until else None
        except Exception as exc:  # a champion we cannot load is reported, not fatal
            context.log.warning(f"Could not load champion version {champion_version}: {exc}")
    comparable = champion is not None and set(champion.spec.feature_columns) <= set(
        training_set.columns
    )

    tags = {
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "training_set_fingerprint": fingerprint,
    }
    with mlflow_tracking.start_run(f"forecast_model-{context.run.run_id[:8]}", tags) as run:
        mlflow.log_input(
            from_pandas(
                training_set.head(1000),
                name="training_set",
                digest=fingerprint,
                targets=spec.target_columns[0],
            ),
            context="training",
            tags={"built_from_partitions": _training_set_partitions(context)},
        )
        mlflow.log_dict(
            {
                "first_day": str(training_set["datetime_utc"].min().date()),
                "last_day": str(trained_until.date()),
                "sensors": [int(s) for s in spec.sensors],
            },
            "training_set/partitions.json",
        )
        judged = judge_candidate(
            training_set, spec, config.holdout_days, config.validation_days, config.max_rounds
        )
        mlflow.log_params(
            {
                "parameter": spec.parameter,
                "horizons": ",".join(map(str, spec.horizons)),
                "sensors": len(spec.sensors),
                "holdout_days": judged.holdout_days,
                "validation_days": judged.validation_days,
                "baseline_tolerance": config.baseline_tolerance,
                "champion_tolerance": config.champion_tolerance,
                "target": "change from current level, blended with " + ", ".join(BLEND_COMPONENTS),
                **{f"xgb_{k}": v for k, v in DEFAULT_PARAMS.items()},
            }
        )
        candidate, holdout, scores = judged.candidate, judged.holdout, judged.scores
        champion_scores = None
        if comparable and champion is not None:
            # The champion is judged only on held-out days it did not learn from, if enough.
            unseen = holdout[holdout["datetime_utc"] > (champion_until or pd.Timestamp.min)]
            days = unseen["datetime_utc"].dt.floor("D").nunique()
            if days >= MIN_CHAMPION_DAYS:
                champion_scores = evaluate(
                    unseen,
                    {"model": candidate.predict(unseen), "champion": champion.predict(unseen)},
                    spec,
                )
            else:
                context.log.info(
                    f"Champion version {champion_version} learnt all but {days} held-out days: "
                    f"not compared (needs {MIN_CHAMPION_DAYS}); the baselines are the bar."
                )
        decision = decide(
            scores, config.baseline_tolerance, config.champion_tolerance, champion_scores
        )
        note, registered_scores = "", scores[scores.forecaster == "model"]
        if decision.passed:
            registered = fit_forecaster(
                training_set, spec, judged.validation_days, max_rounds=config.max_rounds
            )
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
            context.log.warning(note)
        else:  # refused: registered for the record, never promoted
            registered = candidate
            registered_until = judged.before["datetime_utc"].max()
        _log_scores(scores, registered_scores)
        table = scores_table(scores)
        mlflow.log_text(table, "evaluation.md")
        if config.backtest_origins and decision.passed:
            backtested = _backtest(registered, training_set, holdout, config.backtest_origins)
            if not backtested.empty:
                mlflow.log_text(origins_table(backtested), "backtest.md")
                for h, skill in pooled_rmse(backtested, [])["skill_vs_best"].items():
                    mlflow.log_metric(f"backtest_skill_vs_best_h{h}", float(skill))
        mlflow.log_dict(
            {str(h): w for h, w in registered.blend_weights.items()}, "blend_weights.json"
        )
        version = _log_and_register(mlflow_tracking, registered, holdout, spec)
        # The drift reference belongs to the version: the days it learnt from (a sample
        # across the whole window, so every season in it), and its error on days it did not
        # (a trained version's, the candidate's: the same settings without those days).
        learnt = training_set if registered_until == trained_until else judged.before
        judged_forecaster = registered if registered.is_baseline else candidate
        view = drift_view(learnt, spec.covariates)
        mlflow_tracking.log_drift_reference(
            drift_reference(
                view,
                learnt.loc[view.index, "datetime_utc"].dt.floor("D"),
                relative_error(judged_forecaster.predict(holdout)["h1"], holdout["target_h1"]),
            )
        )
        version_tags = {
            GATE_TAG: "passed" if decision.passed or note else "failed",
            "aq.gate_reasons": "; ".join(decision.reasons) or "none",
            KIND_TAG: "baseline" if registered.is_baseline else "trained",
            TRAINED_UNTIL_TAG: str(registered_until),
            "training_set_fingerprint": fingerprint,
        }
        client = mlflow_tracking.client()
        for key, value in version_tags.items():
            client.set_model_version_tag(mlflow_tracking.model_name, str(version), key, value)

    run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
    model_scores = registered_scores.set_index("horizon")
    metadata: dict[str, Any] = {
        "model_version": version,
        "model_kind": "baseline" if registered.is_baseline else "trained",
        "mlflow_run_id": run.info.run_id,
        "mlflow_run": MetadataValue.url(run_url)
        if run_url
        else f"{mlflow_tracking.uri} (mlflow ui --backend-store-uri ...)",
        "training_set_fingerprint": fingerprint,
        "trained_until_utc": str(registered_until),
        "evaluation": MetadataValue.md(table),
        "holdout_rows": len(holdout),
        "train_rows": len(training_set)
        if registered_until == trained_until
        else len(judged.before),
        "best_iterations": MetadataValue.json(
            {str(h): n for h, n in registered.best_iterations.items()}
        ),
        "blend_weights": MetadataValue.json(
            {str(h): w for h, w in registered.blend_weights.items()}
        ),
    }
    for h, row in model_scores.iterrows():
        metadata[f"rmse_h{h}"] = float(row["rmse"])
        metadata[f"mae_h{h}"] = float(row["mae"])
        metadata[f"skill_h{h}"] = float(row["skill"])
    thresholds = {
        "baseline_tolerance": config.baseline_tolerance,
        "champion_tolerance": config.champion_tolerance,
    }
    return MaterializeResult(
        metadata=metadata,
        check_results=[
            gate_result(
                scores,
                decision,
                thresholds,
                champion_version if champion_scores is not None else None,
                champion_scores,
                note,
            )
        ],
    )


def _log_scores(scores: pd.DataFrame, registered: pd.DataFrame) -> None:
    """Held-out RMSE and MAE of every forecaster (`rmse_<name>_h<h>`), and of the registered
    version (`rmse_h<h>`, `mae_h<h>`, `skill_h<h>`: the candidate's, or for a baseline
    forecaster the baseline's it forecasts; the service shows these)."""
    import mlflow

    for row in scores.itertuples():
        name = "candidate" if row.forecaster == "model" else row.forecaster
        mlflow.log_metric(f"rmse_{name}_h{row.horizon}", row.rmse)
        mlflow.log_metric(f"mae_{name}_h{row.horizon}", row.mae)
    for row in registered.itertuples():
        mlflow.log_metric(f"rmse_h{row.horizon}", row.rmse)
        mlflow.log_metric(f"mae_h{row.horizon}", row.mae)
        mlflow.log_metric(f"skill_h{row.horizon}", row.skill)


def _backtest(
    registered: Forecaster, training_set: pd.DataFrame, holdout: pd.DataFrame, origins: int
) -> pd.DataFrame:
    """The registered settings (rounds, blend weights) trained again on the days before each
    of the fortnights preceding the held-out days and scored on it. The settings were chosen
    on later days, so this says how steady the model is across recent weeks, not how it
    generalizes (`benchmarks/forecast_quality.py` does that)."""
    step = 14
    end = holdout["datetime_utc"].min().floor("D")
    return backtest(
        training_set,
        registered.spec,
        origins_before(end, origins, step),
        lambda history, _: registered.refit(history),
        window_days=10_000,
        test_days=step,
    )


def _log_and_register(
    tracking: MLflowTracking, forecaster, holdout: pd.DataFrame, spec: FeatureSpec
) -> int:
    import mlflow
    from mlflow.models import infer_signature

    from aq_assets.ml.pyfunc import FORECASTER_ARTIFACT, ForecastModel

    example = holdout[holdout["level"].notna()].head(3)[
        ["sensor_id", "datetime_utc", *spec.feature_columns]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        forecaster.save(Path(tmp) / FORECASTER_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecastModel(),
            artifacts={FORECASTER_ARTIFACT: str(Path(tmp) / FORECASTER_ARTIFACT)},
            signature=infer_signature(example, forecaster.predict(example)),
            input_example=example,
            registered_model_name=tracking.model_name,
        )
    return int(info.registered_model_version)


def _training_set_partitions(context: AssetExecutionContext) -> str:
    event = context.instance.get_latest_materialization_event(AssetKey("training_set"))
    if event is None or event.asset_materialization is None:
        return "unknown"
    value = event.asset_materialization.metadata.get("built_from_partitions")
    return str(value.value) if value is not None else "unknown"


@asset(
    group_name="model",
    deps=["forecast_model"],
    automation_condition=AutomationCondition.eager(),
    kinds={"mlflow"},
)
def champion_model(
    context: AssetExecutionContext, mlflow_tracking: MLflowTracking
) -> MaterializeResult:
    """The `champion` alias of `aq-forecast` in the MLflow registry: the version predictions
    and the HTTP service use. It moves to the newest forecast_model only if that version
    passed the promotion gate; otherwise the old champion stays and this says why."""
    event = context.instance.get_latest_materialization_event(AssetKey("forecast_model"))
    if event is None or event.asset_materialization is None:
        raise Failure("No forecast_model yet: materialize forecast_model first.")
    candidate = int(event.asset_materialization.metadata["model_version"].value)
    tags = mlflow_tracking.version_tags(candidate)
    previous = mlflow_tracking.champion_version()
    if tags.get(GATE_TAG) == "passed":
        mlflow_tracking.set_champion(candidate)
        decision = f"promoted version {candidate}" + (
            f" (replacing {previous})" if previous else ""
        )
        if tags.get(KIND_TAG) == "baseline":
            decision += (
                ": a BASELINE forecaster (no trained model passed the gate yet: "
                f"{tags.get('aq.gate_reasons', '')})"
            )
        champion: int | None = candidate
    else:
        reasons = tags.get("aq.gate_reasons", "no gate result recorded")
        decision = f"kept {'version ' + str(previous) if previous else 'no champion'}: version {candidate} failed the gate: {reasons}"
        champion = previous
    context.log.info(decision)
    return MaterializeResult(
        metadata={
            "champion_version": champion if champion is not None else "none",
            "candidate_version": candidate,
            "previous_champion": previous if previous is not None else "none",
            "promoted": champion == candidate and previous != candidate,
            "champion_kind": mlflow_tracking.version_tags(champion).get(KIND_TAG, "trained")
            if champion is not None
            else "none",
            "decision": decision,
        }
    )
