# rwproxy container image: the proxy alone, as the sidecar in deploy/kubernetes/ and the
# `rwproxy` service in docker-compose.yml run it.
#
#   docker build -t rwproxy:0.1.0 .
#   docker compose up -d --build      # the image in front of three MariaDB containers
#
# Two stages: the builder compiles the data-path modules with mypyc (proxy/compiled.py,
# setup.py; the C compiler and mypy stay in this stage) and installs the package and its
# dependencies into a venv (every dependency has wheels for linux/amd64 and linux/arm64);
# the final stage copies that venv onto a clean base. The final image runs as an
# unprivileged numeric user and writes nothing outside /tmp, so it runs with a read-only
# root filesystem. The configuration is read from $RWPROXY_CONFIG (default:
# /etc/rwproxy/rwproxy.yaml, a copy of config/kubernetes.yaml that a mounted ConfigMap or
# bind mount replaces); passwords come from files mounted at /etc/rwproxy/secrets/, never
# from the image.
#
# Keep in sync: EXPOSE and HEALTHCHECK follow `listen` and `http` in config/kubernetes.yaml
# (tests/deploy/test_image.py checks this).

# Pinned by version; pin by digest too (python:3.11.14-slim-bookworm@sha256:...) where the
# registry is reachable, and let a bot bump both.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The mypy that compiles the image: the dev extras' pin, which `make test` compiles with
# (tests/deploy/test_image.py keeps the two equal).
ARG MYPY_VERSION=2.4.1

# Unpinned on purpose: only the compiler's output reaches the image, and a pinned Debian
# point release breaks the build once the mirror drops it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/rwproxy \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install "mypy==${MYPY_VERSION}" types-PyYAML "setuptools>=68" wheel

WORKDIR /src
# Only what the build needs (see .dockerignore): the metadata first, then the package.
COPY pyproject.toml README.md setup.py ./
COPY proxy/ ./proxy/
# mypyc type-checks what it compiles, so the build venv gets the dependencies too. Then a
# compiled wheel, installed as a regular (not editable) package; pip also compiles the .pyc
# files here, because the read-only final image cannot write them at run time. The check
# fails the build if any data-path module of the installed package would run as pure Python
# (-P: not the source tree in the working directory, which has no extensions).
RUN /opt/build/bin/pip install . \
    && RWPROXY_COMPILE=1 /opt/build/bin/pip wheel --no-build-isolation --no-deps -w /wheels . \
    && /opt/rwproxy/bin/pip install --no-cache-dir /wheels/rwproxy-*.whl \
    && /opt/rwproxy/bin/python -P -c "from proxy import compiled as c; \
assert c.compiled_modules() == list(c.COMPILED_MODULES), c.describe()" \
    && /opt/rwproxy/bin/rwproxy --version


FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="rwproxy" \
      org.opencontainers.image.description="Write-routing MySQL/MariaDB proxy for StatefulSets behind a headless Service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 rwproxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin rwproxy \
    && mkdir -p /etc/rwproxy/secrets

COPY --from=builder /opt/rwproxy /opt/rwproxy
COPY config/kubernetes.yaml /etc/rwproxy/rwproxy.yaml

ENV PATH=/opt/rwproxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RWPROXY_CONFIG=/etc/rwproxy/rwproxy.yaml

USER 10001:10001
WORKDIR /tmp

# 3306: MySQL protocol (the sidecar's `listen`); 6070: /metrics, /healthz, /readyz (`http`).
EXPOSE 3306 6070

# slim has no curl: ask /healthz with the standard library (urlopen raises on non-2xx).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/opt/rwproxy/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6070/healthz', timeout=2)"]

# SIGTERM starts the drain (see proxy/app.py); give it shutdown_timeout_seconds (25 s) + margin
# with `docker stop -t 30` / compose's stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rwproxy"]
CMD ["serve"]
