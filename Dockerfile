# ccwatch container image. Build:   docker build -t ccwatch .
# Run:     docker run -p 9865:9865 -v "$PWD/ccwatch.yml:/etc/ccwatch/ccwatch.yml:ro" ccwatch
# See docs/deploy.md. Needs BuildKit (the default builder since Docker 23) for RUN --mount.

# ---------------------------------------------------------------- stage 1: wheels
# Builds a wheel of ccwatch and of every dependency. The dependencies with C code (aiohttp,
# lxml, orjson, pydantic-core, ...) ship manylinux wheels for amd64 and arm64, so this stage
# needs no compiler either; the final stage gets only the wheels.
FROM python:3.11-slim-bookworm AS wheels

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ccwatch/ ./ccwatch/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---------------------------------------------------------------- stage 2: runtime
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="ccwatch" \
      org.opencontainers.image.description="Contact-center availability exporter for Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Install from the wheels only (--no-index: nothing is fetched here; the versions were
# resolved in the wheels stage), then add the fixed non-root user ccwatch runs as.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/ccwatch-*.whl \
    && groupadd --system --gid 65532 ccwatch \
    && useradd --no-log-init --uid 65532 --gid 65532 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ccwatch \
    && mkdir -p /etc/ccwatch \
    && ccwatch --version

# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532

EXPOSE 9865

# `ccwatch healthcheck` GETs /-/healthy on 127.0.0.1 at the port of the config's listen
# address (default 9865), over https when the web config sets tls_server_config; any HTTP
# answer (a 401 too) passes. It reads /etc/ccwatch/ccwatch.yml (and the CCWATCH_* overrides)
# for web.listen_address and web.config_file: a --web.listen-address or --web.config.file
# given to `run` only must be repeated here (docker run --health-cmd, compose healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["ccwatch", "healthcheck"]

# ccwatch is PID 1 and handles the signals itself: SIGTERM/SIGINT stop it gracefully
# (exit 0), SIGHUP reloads the configuration.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ccwatch"]
CMD ["run", "--config.file=/etc/ccwatch/ccwatch.yml"]
