# One image for every Swarm service: gateway, scheduler, executor, chat (and the swarm CLI).
#
#   docker build -t swarm:local .
#   docker build -t swarm:local --build-arg INSTALL_CLAUDE=1 .   # with the Claude Code CLI
#   docker build -t swarm:local --build-arg SWARM_EXTRA=daytona-oss .  # self-hosted Daytona v0.190
#
# Which service a container runs is its command (compose.yaml): python -m services.<name>.
# Configuration is environment only (NATS_URL, SWARM_API_TOKEN, ...: see docs/operations.md).
#
# Installed from uv.lock: exactly the versions `./dev` installs, never a newer release.

# --- build: the locked dependencies, then Swarm itself, into the virtualenv /opt/swarm ---------
# (UV_SYSTEM_CERTS: trust the image's CA store, as pip does, e.g. for a TLS-inspecting proxy.)
FROM python:3.11-slim AS build

# The one tool not in uv.lock, pinned like ./dev pins it (a test checks they agree).
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        --target /opt/uv "uv==${UV_VERSION}"

# An install extra of pyproject.toml, e.g. daytona-oss: the SDK line of a self-hosted open-source
# Daytona v0.190 instead of the hosted service's (README, "Running against a real Daytona").
ARG SWARM_EXTRA=""

ENV UV_PROJECT_ENVIRONMENT=/opt/swarm \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_SYSTEM_CERTS=1
WORKDIR /src

# Dependencies first: this layer is rebuilt only when uv.lock or pyproject.toml change.
COPY pyproject.toml uv.lock README.md /src/
RUN /opt/uv/bin/uv sync --frozen --no-default-groups ${SWARM_EXTRA:+--extra "$SWARM_EXTRA"} \
        --no-install-project --python python3

COPY schemas /src/schemas
COPY services /src/services
COPY cli /src/cli
RUN /opt/uv/bin/uv sync --frozen --no-default-groups ${SWARM_EXTRA:+--extra "$SWARM_EXTRA"} \
        --no-editable --python python3

# --- run ---------------------------------------------------------------------------------------
FROM python:3.11-slim

# 1: also install Node.js and the Claude Code CLI (`claude`), for the claude runtime in
# executors. Without it executors run shell tasks only (or set SWARM_CLAUDE_BIN).
ARG INSTALL_CLAUDE=0

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/swarm/bin:$PATH

# git: executors clone the swarm's project into each agent's working directory.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends git ca-certificates; \
    if [ "$INSTALL_CLAUDE" = "1" ]; then \
        apt-get install -y --no-install-recommends nodejs npm; \
        npm install -g @anthropic-ai/claude-code; \
        npm cache clean --force; \
    fi; \
    rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/swarm /opt/swarm

# Never root: agents run commands in this user's working directories.
RUN useradd --create-home --uid 10001 --shell /bin/bash swarm
USER swarm
WORKDIR /home/swarm
ENV SWARM_DATA_DIR=/home/swarm/.swarm

CMD ["swarm", "--help"]
