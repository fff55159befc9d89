# One image for every Swarm service: gateway, scheduler, executor, chat (and the swarm CLI).
#
#   docker build -t swarm:local .
#   docker build -t swarm:local --build-arg INSTALL_CLAUDE=1 .   # with the Claude Code CLI
#
# Which service a container runs is its command (compose.yaml): python -m services.<name>.
# Configuration is environment only (NATS_URL, SWARM_API_TOKEN, ...: see docs/operations.md).
FROM python:3.11-slim

# 1: also install Node.js and the Claude Code CLI (`claude`), for the claude runtime in
# executors. Without it executors run shell tasks only (or set SWARM_CLAUDE_BIN).
ARG INSTALL_CLAUDE=0

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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

COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY services /src/services
COPY cli /src/cli
RUN pip install /src && rm -rf /src

# Never root: agents run commands in this user's working directories.
RUN useradd --create-home --uid 10001 --shell /bin/bash swarm
USER swarm
WORKDIR /home/swarm
ENV SWARM_DATA_DIR=/home/swarm/.swarm

CMD ["swarm", "--help"]
