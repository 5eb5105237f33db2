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

from aq_assets.ingest.sources.base import ReadingsSource
from aq_assets.ml.evaluation import baseline_forecasts, evaluate, scores_table
from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.model import DEFAULT_PARAMS, TimeSplit, train_forecaster
from aq_assets.model.gate import GATE, decide, gate_result
from aq_assets.model.tracking import MLflowTracking
from aq_assets.settings import env_value
from aq_assets.training.assets import content_fingerprint

# How old the model may get before it shows as stale and is retrained; read at load.
MODEL_MAX_AGE = datetime.timedelta(days=float(env_value("AQ_MODEL_MAX_AGE_DAYS", "7")))

GATE_TAG = "aq.gate"


class ForecastModelConfig(Config):
    holdout_days: int = 14
    """Final days held out to judge the model and the baselines on the same rows."""
    validation_days: int = 14
    """Days before the holdout used for early stopping."""
    champion_tolerance: float = 0.05
    """How much worse than the champion (relative RMSE) a new model may be and still pass.
    Retraining on nearly the same data moves a horizon's RMSE by 2-3% (seen at 6 h after a
    drift), so a tighter bound refuses equivalent models at random."""
    max_rounds: int = 3000
    """Upper bound on boosting rounds per horizon (early stopping usually ends sooner)."""


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
    """An XGBoost forecaster of the next 1-24 hours, trained on a time-ordered split, judged
    on held-out days against persistence, same-hour-yesterday, hour-of-day climatology and
    the current champion, and registered as a new version of `aq-forecast` in MLflow."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    spec = FeatureSpec.of_training_set(training_set, source.parameter)
    split = TimeSplit.last_days(
        training_set["datetime_utc"], config.holdout_days, config.validation_days
    )
    train, validation, holdout = split.parts(training_set, max(spec.horizons))
    fingerprint = content_fingerprint(training_set)
    champion_version = mlflow_tracking.champion_version()
    champion = None
    if champion_version is not None:
        try:
            champion = mlflow_tracking.load_forecaster(champion_version)
        except Exception as exc:  # a champion we cannot load is reported, not fatal
            context.log.warning(f"Could not load champion version {champion_version}: {exc}")
    comparable = champion is not None and set(champion.spec.feature_columns) <= set(holdout.columns)

    tags = {
        "dagster_run_id": context.run.run_id,
        "dagster_asset": context.asset_key.to_user_string(),
        "training_set_fingerprint": fingerprint,
    }
    with mlflow_tracking.start_run(f"forecast_model-{context.run.run_id[:8]}", tags) as run:
        mlflow.log_params(
            {
                "parameter": spec.parameter,
                "horizons": ",".join(map(str, spec.horizons)),
                "sensors": len(spec.sensors),
                "holdout_days": config.holdout_days,
                "validation_days": config.validation_days,
                "target": "change from current level",
                **{f"xgb_{k}": v for k, v in DEFAULT_PARAMS.items()},
            }
        )
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
        forecaster = train_forecaster(train, validation, spec, max_rounds=config.max_rounds)
        forecasts = {"model": forecaster.predict(holdout)}
        # Baselines look back from each held-out row (same hour yesterday): compute them on the
        # whole frame, then keep the held-out rows.
        baselines = baseline_forecasts(training_set, pd.concat([train, validation]), spec)
        forecasts.update({name: frame.loc[holdout.index] for name, frame in baselines.items()})
        if comparable and champion is not None:
            forecasts["champion"] = champion.predict(holdout)
        scores = evaluate(holdout, forecasts, spec)
        model_scores = scores[scores.forecaster == "model"].set_index("horizon")
        for forecaster_name, rows in scores.groupby("forecaster"):
            suffix = "" if forecaster_name == "model" else f"_{forecaster_name}"
            for row in rows.itertuples():
                mlflow.log_metric(f"rmse{suffix}_h{row.horizon}", row.rmse)
                mlflow.log_metric(f"mae{suffix}_h{row.horizon}", row.mae)
        for h, row in model_scores.iterrows():
            mlflow.log_metric(f"skill_h{h}", row["skill"])
        table = scores_table(scores)
        mlflow.log_text(table, "evaluation.md")
        decision = decide(scores, config.champion_tolerance)
        version = _log_and_register(mlflow_tracking, forecaster, holdout, spec)
        client = mlflow_tracking.client()
        client.set_model_version_tag(
            mlflow_tracking.model_name,
            str(version),
            GATE_TAG,
            "passed" if decision.passed else "failed",
        )
        client.set_model_version_tag(
            mlflow_tracking.model_name,
            str(version),
            "aq.gate_reasons",
            "; ".join(decision.reasons) or "none",
        )
        client.set_model_version_tag(
            mlflow_tracking.model_name, str(version), "training_set_fingerprint", fingerprint
        )

    run_url = mlflow_tracking.run_url(run.info.experiment_id, run.info.run_id)
    metadata: dict[str, Any] = {
        "model_version": version,
        "mlflow_run_id": run.info.run_id,
        "mlflow_run": MetadataValue.url(run_url)
        if run_url
        else f"{mlflow_tracking.uri} (mlflow ui --backend-store-uri ...)",
        "training_set_fingerprint": fingerprint,
        "evaluation": MetadataValue.md(table),
        "holdout_rows": len(holdout),
        "train_rows": len(train),
        "best_iterations": MetadataValue.json(
            {str(h): n for h, n in forecaster.best_iterations.items()}
        ),
    }
    for h, row in model_scores.iterrows():
        metadata[f"rmse_h{h}"] = float(row["rmse"])
        metadata[f"mae_h{h}"] = float(row["mae"])
        metadata[f"skill_h{h}"] = float(row["skill"])
    return MaterializeResult(
        metadata=metadata,
        check_results=[
            gate_result(scores, config.champion_tolerance, champion_version if comparable else None)
        ],
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
            "decision": decision,
        }
    )
