"""aq: air-quality forecasting as Dagster software-defined assets."""
