#!/bin/sh
# Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d): one
# role and one database for the Dagster instance, one for the MLflow backend store, one for the
# aq warehouse. Names and passwords come from .env; psql quotes them (:"identifier", :'literal').
set -eu
: "${DAGSTER_PG_USER:?}" "${DAGSTER_PG_PASSWORD:?}" "${DAGSTER_PG_DB:?}"
: "${MLFLOW_PG_USER:?}" "${MLFLOW_PG_PASSWORD:?}" "${MLFLOW_PG_DB:?}"
: "${WAREHOUSE_PG_USER:?}" "${WAREHOUSE_PG_PASSWORD:?}" "${WAREHOUSE_PG_DB:?}"
psql --set=ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set=dagster_user="$DAGSTER_PG_USER" --set=dagster_password="$DAGSTER_PG_PASSWORD" \
  --set=dagster_db="$DAGSTER_PG_DB" \
  --set=mlflow_user="$MLFLOW_PG_USER" --set=mlflow_password="$MLFLOW_PG_PASSWORD" \
  --set=mlflow_db="$MLFLOW_PG_DB" \
  --set=warehouse_user="$WAREHOUSE_PG_USER" --set=warehouse_password="$WAREHOUSE_PG_PASSWORD" \
  --set=warehouse_db="$WAREHOUSE_PG_DB" <<'SQL'
CREATE ROLE :"dagster_user" LOGIN PASSWORD :'dagster_password';
CREATE DATABASE :"dagster_db" OWNER :"dagster_user";
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
CREATE ROLE :"warehouse_user" LOGIN PASSWORD :'warehouse_password';
CREATE DATABASE :"warehouse_db" OWNER :"warehouse_user";
REVOKE ALL ON DATABASE :"warehouse_db" FROM PUBLIC;
SQL
