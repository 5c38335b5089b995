# The code location image: the Dagster gRPC code server (Helm user deployment), the run pods the
# K8sRunLauncher starts from it, Celery workers, and the REST API (deploy/k8s/api.yaml) all run it.
# Build: docker build -t sales-sync:$(git rev-parse --short HEAD) .
# Pin the base by digest in your registry mirror too (python:3.11.7-slim-bookworm@sha256:…).

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so code edits reuse this layer. The project installs no
# packages of its own (an application run from its directory), only its pinned dependencies + extras.
COPY pyproject.toml ./
RUN /opt/venv/bin/pip install ".[k8s,celery]"

FROM python:3.11.7-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/sales-sync \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
RUN groupadd --system --gid 10001 sync \
    && useradd --system --uid 10001 --gid sync --home-dir /opt/sales-sync --shell /usr/sbin/nologin sync \
    && mkdir -p /opt/dagster/dagster_home \
    && chown sync:sync /opt/dagster/dagster_home
COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/sales-sync
# The application, owned by root and read-only to the runtime user (.dockerignore leaves out tests, bench,
# the sandbox and local state).
COPY --chown=root:root . .
USER 10001:10001
EXPOSE 3030
# The Helm chart overrides this with `dagster api grpc` + dagsterApiGrpcArgs; this default serves the same.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-f", "definitions.py"]
