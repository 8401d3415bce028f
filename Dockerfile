# dcr-gateway image: the installed package only (gateway, adapters) in a virtual environment, run as the numeric
# non-root user 10001:10001; it writes nothing outside /tmp, so it runs with a read-only root filesystem.
#
#   make image                                     localhost/dcr-gateway:<version>: Docker when an engine answers,
#                                                  else podman on a locally bootstrapped Debian base (deploy/image/build.sh)
#   docker build -t localhost/dcr-gateway:0.1.0 .   the same with Docker by hand
#   docker run --rm --read-only --tmpfs /tmp -p 127.0.0.1:8080:8080 -p 127.0.0.1:9180:9180 \
#       -e DCR_PROVIDER=hydra -e DCR_PROVIDER_URL=... -e DCR_HYDRA__ADMIN_URL=... localhost/dcr-gateway:0.1.0
#
# BASE_IMAGE: any Debian-like image whose `python3` is CPython >= 3.11 with the venv module. Default: the official
# Python slim image, pinned to a patch release and a Debian release (bump deliberately). The DEVELOPMENT-ONLY
# Hydra login app of docker-compose.yml runs from the `devstack` stage (--target devstack), never from the
# default target, the last stage.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# --- builder: a wheel of the project installed into /opt/dcr-gateway with its pinned runtime dependencies only
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8
WORKDIR /src
# The pinned runtime dependencies first, from pyproject.toml alone: a change to the sources reuses this layer.
COPY pyproject.toml ./
RUN python3 -m venv /opt/dcr-gateway \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/dcr-gateway/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
# Byte code is compiled here (pip's default), so nothing is written at run time. pip and setuptools leave the
# environment afterwards: the service does not use them.
RUN /opt/dcr-gateway/bin/pip install --no-cache-dir --no-deps . \
    && /opt/dcr-gateway/bin/pip check \
    && /opt/dcr-gateway/bin/pip uninstall --yes pip setuptools \
    && /opt/dcr-gateway/bin/dcr-gateway --help >/dev/null

# --- gateway: the production image
FROM ${BASE_IMAGE} AS gateway
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="dcr-gateway" \
      org.opencontainers.image.description="RFC 7591 dynamic client registration and RFC 8414 discovery in front of Keycloak and Ory Hydra, for MCP clients" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 dcr-gateway \
    && useradd --no-log-init --no-create-home --uid 10001 --gid 10001 \
        --home-dir /nonexistent --shell /usr/sbin/nologin dcr-gateway
COPY --from=builder /opt/dcr-gateway /opt/dcr-gateway
# Public listener on 8080, management listener (/metrics, /healthz, /readyz) on 9180, on every interface of the
# container. Nothing is written at run time but to /tmp (a tmpfs or emptyDir under a read-only root filesystem).
ENV PATH=/opt/dcr-gateway/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    TMPDIR=/tmp \
    DCR_HOST=0.0.0.0 \
    DCR_PORT=8080 \
    DCR_MANAGEMENT__HOST=0.0.0.0
USER 10001:10001
EXPOSE 8080 9180
ENTRYPOINT ["dcr-gateway"]
CMD ["serve"]

# --- devstack: DEVELOPMENT ONLY (docker-compose.yml's login-consent service): the production image plus
# devstack/, run from its directory so `python -m devstack.login_consent` finds it.
FROM gateway AS devstack
WORKDIR /opt/dcr-gateway-devstack
COPY devstack ./devstack

# --- the default target: the production image, without the development stack.
FROM gateway AS production
