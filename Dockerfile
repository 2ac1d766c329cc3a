# Fortrolig node image: Debian bookworm, Debian's Python 3.11, the native media data plane
# compiled in a build stage; the runtime stage holds no compiler. docs/operations.md,
# "Container image", documents ports, the volume, the environment and the health check.
#
#   docker build -t fortrolig .
#   docker run --network=host -v fortrolig-data:/data \
#       -e FORTROLIG_SERVER__PUBLIC_URL=https://consult.example.eu fortrolig
#
# The image listens on 0.0.0.0, so the node refuses to start on plain http until it is told
# how clients reach it: FORTROLIG_SERVER__PUBLIC_URL=https://... (TLS at a reverse proxy), or
# FORTROLIG_SERVER__TLS_CERT_FILE/_KEY_FILE (the node serves HTTPS itself), or, for a lab
# only, FORTROLIG_SERVER__ALLOW_INSECURE_HTTP=true.
#
# Media needs host networking (or a host with the node's own address): ICE host candidates
# are bound to the addresses in FORTROLIG_MEDIA__ICE_HOST_ADDRESSES on ephemeral UDP ports.

# --- build: a wheel of the project (with fortrolig.media._fastpath) and a venv holding it ---
FROM debian:bookworm-slim AS build

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc libc6-dev python3 python3-dev python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The venv sits at the path it has at run time: its scripts name /opt/fortrolig/bin/python.
# Debian's pip (in the venv) verifies PyPI against the system CA bundle; a build behind a
# TLS-inspecting proxy mounts its CA into /usr/local/share/ca-certificates (docs/operations.md).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/fortrolig

WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a code change reuses this layer.
COPY pyproject.toml ./
RUN /opt/fortrolig/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && /opt/fortrolig/bin/pip install --no-cache-dir -r /tmp/requirements.txt

COPY fortrolig ./fortrolig
RUN /opt/fortrolig/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/fortrolig/bin/pip install --no-cache-dir --no-deps /wheels/fortrolig-*.whl \
    && cd / && /opt/fortrolig/bin/python -c 'import fortrolig.media._fastpath' \
    && /opt/fortrolig/bin/pip uninstall -y -q pip setuptools \
    && find /opt/fortrolig -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: Python, tini, a font for PDF exports; no compiler, no pip ---
FROM debian:bookworm-slim

# tini is PID 1: it forwards SIGTERM to the server (which then drains) and reaps orphans
# (the media worker processes' children), so the image needs no `docker run --init`.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 tini fonts-dejavu-core ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fortrolig \
    && useradd --system --uid 10001 --gid fortrolig --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin fortrolig \
    && install -d -m 0700 -o fortrolig -g fortrolig /data /data/keys

COPY --from=build /opt/fortrolig /opt/fortrolig

# Configuration: FORTROLIG_<SECTION>__<KEY> (see docs/operations.md), or a TOML file named by
# FORTROLIG_CONFIG. Secrets are files mounted read-only (e.g. /run/secrets/...), mode 0600,
# owned by uid 10001. Links and ICE host addresses must be set for a real deployment:
# FORTROLIG_SERVER__PUBLIC_URL (https; required by the 0.0.0.0 listener, see above) and
# FORTROLIG_MEDIA__ICE_HOST_ADDRESSES.
ENV PATH=/opt/fortrolig/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FORTROLIG_SERVER__HOST=0.0.0.0 \
    FORTROLIG_SERVER__PORT=8750 \
    FORTROLIG_SERVER__DATA_DIR=/data

VOLUME ["/data"]
EXPOSE 8750/tcp
USER 10001:10001
WORKDIR /data

# Liveness on /healthz, at the host and port the node's own configuration names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "fortrolig.app.healthcheck"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "fortrolig"]
CMD ["serve"]
