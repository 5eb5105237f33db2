"""Jobs of the model stage."""

from dagster import AssetSelection, define_asset_job

train_job = define_asset_job(
    "train_job",
    selection=AssetSelection.assets("training_set", "forecast_model", "champion_model"),
    description="Build the training set, train and judge a forecaster, promote it if it passes the gate.",
)
