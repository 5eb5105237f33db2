"""The aq HTTP forecast service: FastAPI app factory `serving.app:create_app`."""

import os

# Two shared cores: no OpenMP thread pool in this process. Must be set before xgboost (and its
# libgomp) is first imported, which happens when the app module loads the model code.
os.environ["OMP_NUM_THREADS"] = "1"
# A model download is not a terminal session: no progress bars in the service's log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
