"""Model stage: the forecaster in MLflow, its promotion gate, and the champion alias."""
