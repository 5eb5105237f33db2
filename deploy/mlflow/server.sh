#!/bin/sh
# The MLflow tracking server of docker-compose.yml: runs, models and the registry in Postgres,
# artifacts proxied by the server (clients need no bucket credentials), stored under
# MLFLOW_ARTIFACTS_DESTINATION (a volume here; s3://... with MinIO/S3, see deploy/minio/).
# The password is URL-encoded here so any password from .env works in the database URI.
set -eu
: "${MLFLOW_PG_USER:?}" "${MLFLOW_PG_PASSWORD:?}" "${MLFLOW_PG_HOST:?}" "${MLFLOW_PG_DB:?}"
password=$(python -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["MLFLOW_PG_PASSWORD"], safe=""))')
user=$(python -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["MLFLOW_PG_USER"], safe=""))')
exec mlflow server \
  --backend-store-uri "postgresql+psycopg2://${user}:${password}@${MLFLOW_PG_HOST}:${MLFLOW_PG_PORT:-5432}/${MLFLOW_PG_DB}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  "$@"
