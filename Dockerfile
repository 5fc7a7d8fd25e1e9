# budgetguard's container image: `budgetguard run` as a fixed non-root user on a read-only root.
#
# Two stages: the first builds the wheel (the same `python -m build` a release runs), the second installs
# only that wheel and its dependencies into a virtual environment, so no compiler, build tool or source
# tree reaches the image. Everything the daemon writes goes to two volumes: the store
# (/var/lib/budgetguard, BUDGETGUARD_DB) and temporary files (/tmp, TMPDIR, also SQLite's). Mount the
# SLO files at /etc/budgetguard/slos and, optionally, a config file (`--config`).
#
#   docker build -t budgetguard .
#   docker run --read-only -v bg-store:/var/lib/budgetguard --tmpfs /tmp \
#     -v "$PWD/slos:/etc/budgetguard/slos:ro" budgetguard --prometheus http://prometheus:9090
#
# PYTHON_IMAGE may name any Debian-based image with python3 (3.11 or newer) and its venv module; the
# default is the official slim image. docs/how-to/install.md says more.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --disable-pip-version-check build==1.2.2
COPY pyproject.toml README.md ./
COPY budgetguard ./budgetguard
RUN /opt/build/bin/python -m build --wheel --outdir /dist .

FROM ${PYTHON_IMAGE}
# Keep VERSION equal to pyproject's version (tests/test_packaging.py checks it). The project has no
# public home yet: a release build passes SOURCE_URL (e.g. `--build-arg SOURCE_URL=$(git remote get-url origin)`).
ARG VERSION=0.1.0
ARG SOURCE_URL=unpublished
LABEL org.opencontainers.image.title="budgetguard" \
      org.opencontainers.image.description="Error-budget guard for progressive delivery: SLO burn rates from Prometheus, canary gating." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it without a passwd lookup, and
# fsGroup/volume ownership can name it.
ARG UID=10001
RUN groupadd --system --gid "${UID}" budgetguard \
    && useradd --system --uid "${UID}" --gid "${UID}" --home-dir /var/lib/budgetguard --no-create-home \
       --shell /usr/sbin/nologin budgetguard \
    && mkdir -p /var/lib/budgetguard /etc/budgetguard/slos \
    && chown "${UID}:${UID}" /var/lib/budgetguard

COPY --from=build /dist/ /tmp/wheels/
# pip compiles the bytecode at install time, so nothing needs writing under the read-only root later.
RUN python3 -m venv /opt/budgetguard \
    && /opt/budgetguard/bin/pip install --no-cache-dir --disable-pip-version-check /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

ENV PATH="/opt/budgetguard/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    BUDGETGUARD_DB=/var/lib/budgetguard/budgetguard.db \
    BUDGETGUARD_SLO_PATHS='["/etc/budgetguard/slos"]' \
    BUDGETGUARD_LISTEN=0.0.0.0:8731 \
    BUDGETGUARD_LOG_JSON=true

VOLUME ["/var/lib/budgetguard", "/tmp"]
WORKDIR /var/lib/budgetguard
USER ${UID}:${UID}
EXPOSE 8731
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz itself (deploy/kubernetes), and the image
# carries no curl. Extra arguments are `budgetguard run`'s: SLO paths and flags.
ENTRYPOINT ["budgetguard", "run"]
