# One image for the operator (`datasync operator`) and the sync Jobs (`datasync sync`).
#
# Build:  docker build -t ghcr.io/datasync/datasync:0.1.0 .
# The runtime stage has no shell tools beyond the slim base, runs as uid/gid 65532 and works
# with a read-only root filesystem: the chart and the operator's CronJobs mount an emptyDir
# at /tmp for scratch space (HOME points there too).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/datasync \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /src

# Dependencies first (exactly the locked versions), so source edits reuse this layer.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable --no-cache

# Then the project itself, installed non-editable into the same virtual environment.
COPY datasync ./datasync
COPY connectors ./connectors
COPY operator ./operator
RUN uv sync --frozen --no-dev --no-editable --no-cache \
    && /opt/datasync/bin/datasync --help > /dev/null

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="datasync" \
      org.opencontainers.image.description="Kubernetes operator and sync job that keep CRM contacts in step between HubSpot, Salesforce and PostgreSQL" \
      org.opencontainers.image.source="https://github.com/datasync/datasync" \
      org.opencontainers.image.url="https://github.com/datasync/datasync" \
      org.opencontainers.image.documentation="https://github.com/datasync/datasync/blob/main/docs/operations.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="datasync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

ENV PATH=/opt/datasync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

COPY --from=builder /opt/datasync /opt/datasync

USER 65532:65532
WORKDIR /tmp

ENTRYPOINT ["datasync"]
CMD ["--help"]
