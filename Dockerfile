# mockai: a mock of the OpenAI HTTP API, served by twistd on port 8082.
#
#   docker build -t mockai:latest .
#   docker run -p 8082:8082 -e MOCKAI_ACCESS_TOKEN=sk-... mockai:latest
#   docker run -p 8082:8082 -e MOCKAI_WORKERS=4 mockai:latest   # 4 reactors on one port
#
# The config is read from /app/config.yaml (a copy of the repo's config.yaml);
# mount or `docker config` another file there, or override single keys with
# MOCKAI_* environment variables (see deploy/README.md). Replicas share one state
# with -e MOCKAI_STATE__BACKEND=redis -e MOCKAI_STATE__URL=redis://HOST:6379/0.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# curl is only for the health check (the Swarm flow uses the same command).
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

COPY . /src
# A regular (non-editable) install with its extras (exact: exact token counts;
# tls: ssl: listeners; redis: state.backend redis), then build Twisted's plugin
# cache while we are still root: site-packages is read-only to the runtime user,
# and without a prebuilt dropin.cache every start warns that it cannot write one.
RUN pip install --no-cache-dir "/src[exact,tls,redis]" \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && install -d /app \
    && cp /src/config.yaml /app/config.yaml \
    && rm -rf /src

RUN groupadd --system --gid 10001 mockai \
    && useradd --system --uid 10001 --gid mockai --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin mockai

# Numeric, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 10001:10001
WORKDIR /app
EXPOSE 8082

# Reactor processes serving the port (the config's `workers`; 0: one per CPU the
# container may use). One by default: scale with replicas, or override it with
# `-e MOCKAI_WORKERS=N` (the variable wins over `workers` in a mounted config).
ENV MOCKAI_WORKERS=1

# docker stop sends it; twistd drains (shutdown.drain_timeout_s, 30 s by default)
# and exits 0. docker waits only 10 s before SIGKILL unless told more:
# `docker run --stop-timeout 45`, `docker stop -t 45`, a stack's stop_grace_period.
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://localhost:8082/health"]

# -n: stay in the foreground (PID 1, logs to stdout); --pidfile=: no pidfile,
# so a restarted container never trips over a stale one.
ENTRYPOINT ["twistd", "-n", "--pidfile=", "mockai", "--config=/app/config.yaml"]
