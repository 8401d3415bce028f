# dcr-gateway image: the installed package only (gateway, adapters). The DEVELOPMENT-ONLY Hydra login app of
# docker-compose.yml runs from the `devstack` stage (docker build --target devstack), never from this image.
#   docker build -t dcr-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 -e DCR_PROVIDER=hydra -e DCR_PROVIDER_URL=... dcr-gateway
# Pinned: Python patch release and Debian release (bump deliberately; the project requires Python >= 3.11).
FROM python:3.11.13-slim-bookworm AS gateway

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DCR_HOST=0.0.0.0 \
    DCR_PORT=8080

WORKDIR /app
# README.md is optional at build time (the glob matches nothing when it is absent).
COPY pyproject.toml README.m[d] ./
COPY gateway ./gateway
COPY adapters ./adapters
RUN pip install . && rm -rf /root/.cache

USER 65534:65534
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DCR_PORT', '8080'), timeout=2)"
ENTRYPOINT ["dcr-gateway"]
CMD ["serve"]

# Development only (docker-compose.yml's login-consent service): the production image plus devstack/, run from
# /app so `python -m devstack.login_consent` finds it.
FROM gateway AS devstack
COPY devstack ./devstack

# The default target: the production image, without the development stack.
FROM gateway
