# syntax=docker/dockerfile:1
# Specks in a container: a build stage that runs the project's own install script (the one
# `make install` and CI run), and a slim runtime stage with only the virtual environment, the
# embedded default model and a non-root user. No compilers in either stage: every dependency
# installs from a binary wheel.
#
#   docker build -t specks .
#   docker run --rm -p 6060:6060 -e SPECKS_WORKERS=2 specks
#   docker run --rm -p 6060:6060 -v $PWD/models:/models:ro -e SPECKS_MODEL=/models/det.onnx specks
#
# Configuration is the SPECKS_* environment variables (docs/configuration.md, "Environment variables"); arguments after
# the image name replace `serve`, e.g. `docker run --rm specks config`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPECKS_CACHE_DIR=/opt/specks/cache
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY scripts/install.sh ./scripts/install.sh
RUN sh scripts/install.sh /opt/specks/venv

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin specks
COPY --from=build /opt/specks /opt/specks
ENV PATH=/opt/specks/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPECKS_CACHE_DIR=/opt/specks/cache \
    SPECKS_HOST=0.0.0.0 \
    SPECKS_PORT=6060 \
    SPECKS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
EXPOSE 6060
# Healthy = ready: a worker has its model loaded and answers (GET /ready is 200).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('SPECKS_PORT', '6060'), timeout=4)"]
ENTRYPOINT ["specks"]
CMD ["serve"]
