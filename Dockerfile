# syntax=docker/dockerfile:1
# One image for every aq process of docker-compose.yml: the gRPC code server (and the runs it
# launches), dagster-webserver, dagster-daemon, the MLflow tracking server and the forecast
# service. Each compose service picks its command.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock
# Then aq itself (aq_assets, serving), without touching the locked dependencies.
COPY . ./
RUN pip install --no-deps . && pip check

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    AQ_HOME=/data/aq \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_STORAGE_DIR=/opt/dagster/storage \
    DAGSTER_COMPUTE_LOGS_DIR=/opt/dagster/storage/compute_logs
# A writable home: matplotlib, MLflow and Dagster keep small caches under ~/.config and ~/.cache.
RUN groupadd --system --gid 10001 aq \
 && useradd --system --uid 10001 --gid aq --create-home --home-dir /home/aq --shell /usr/sbin/nologin aq
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/aq
COPY deploy/ ./deploy/
# The production instance and workspace config (root-owned files; aq owns DAGSTER_HOME itself,
# where Dagster may keep small state). Mount points of the named volumes are created here, owned
# by aq: an empty named volume takes the ownership of the directory it is mounted on, so the
# non-root user can write to it.
RUN mkdir -p "$DAGSTER_HOME" "$DAGSTER_COMPUTE_LOGS_DIR" "$AQ_HOME" /mlartifacts \
 && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
 && cp deploy/workspace.yaml /opt/dagster/workspace.yaml \
 && chown aq:aq "$DAGSTER_HOME" \
 && chown -R aq:aq "$DAGSTER_STORAGE_DIR" "$AQ_HOME" /mlartifacts
USER aq
EXPOSE 3000 4000 5000 8000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "aq_assets.definitions", "--location-name", "aq"]
