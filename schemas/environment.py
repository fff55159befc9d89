"""Names of environment variables, in one place: which hold secrets (masked wherever their values
could show up, given to commands only at exec time), and which Claude Code settings an
executor passes to the ``claude`` runtime by default.

Reviewed against the Claude Code environment-variable reference and the variables the pinned CLI
(``tests/claude_cli``) reads. A name not listed here reaches an agent only through ``pass_env``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# --- secrets ----------------------------------------------------------------------------------

# The credentials of the claude runtime itself (the first two are what Swarm asks a user for).
CLAUDE_CREDENTIALS: tuple[str, ...] = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")

# Other secrets among the Claude Code settings: alternative auth, cloud providers' credentials,
# headers (which may carry a token), a client key's passphrase.
CLAUDE_SECRETS: tuple[str, ...] = (
    *CLAUDE_CREDENTIALS,
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_FOUNDRY_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE",
    "OTEL_EXPORTER_OTLP_HEADERS",
)

# Swarm's own: the Daytona key, the API token (and the agent tokens made from it), NATS auth.
SWARM_SECRETS: tuple[str, ...] = (
    "DAYTONA_API_KEY",
    "SWARM_API_TOKEN",
    "SWARM_AGENT_TOKEN",
    "NATS_PASSWORD",
    "NATS_TOKEN",
)

# The usual names of git tokens (what a project's ``credentials_ref`` names).
GIT_TOKENS: tuple[str, ...] = ("GIT_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")

SECRET_ENV: tuple[str, ...] = (*CLAUDE_SECRETS, *SWARM_SECRETS, *GIT_TOKENS)
"""Every variable whose value is masked in logs, output, chat and events."""

NOT_GIT_CREDENTIALS: frozenset[str] = frozenset(
    {*CLAUDE_SECRETS, *SWARM_SECRETS, "NATS_CREDS", "NATS_NKEY", "NATS_USER"}
)
"""Names a project's ``credentials_ref`` may not name: the executor's own credentials (a project
URL is chosen by whoever may create projects, and would receive them)."""

# --- Claude Code settings passed through --------------------------------------------------------

NETWORK_SETTINGS: tuple[str, ...] = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
"""Proxies and CA bundles: also given to ``shell`` tasks (npm, pip and git need them too)."""

CLAUDE_SETTINGS: tuple[str, ...] = (
    # where the API is, and how to speak to it
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_BETAS",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_AUTH_TOKEN",
    "API_TIMEOUT_MS",
    "CLAUDE_CODE_MAX_RETRIES",
    "CLAUDE_CODE_API_KEY_HELPER_TTL_MS",
    "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS",
    "ENABLE_TOOL_SEARCH",
    # models
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL_AWS_REGION",
    "CLAUDE_CODE_SUBAGENT_MODEL",
    "CLAUDE_CODE_EFFORT_LEVEL",
    "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
    "MAX_THINKING_TOKENS",
    # Amazon Bedrock
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    # Google Vertex AI
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    # Microsoft Foundry
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
    "ANTHROPIC_FOUNDRY_API_KEY",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "ANTHROPIC_FOUNDRY_RESOURCE",
    # network: proxies, certificates
    *NETWORK_SETTINGS,
    "CLAUDE_CODE_CLIENT_CERT",
    "CLAUDE_CODE_CLIENT_KEY",
    "CLAUDE_CODE_CLIENT_KEY_PASSPHRASE",
    # traffic and telemetry
    "DISABLE_TELEMETRY",
    "DISABLE_ERROR_REPORTING",
    "DISABLE_AUTOUPDATER",
    "DISABLE_BUG_COMMAND",
    "DISABLE_COST_WARNINGS",
    "DISABLE_PROMPT_CACHING",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDE_CODE_ENABLE_TELEMETRY",
    # how tools behave
    "BASH_DEFAULT_TIMEOUT_MS",
    "BASH_MAX_TIMEOUT_MS",
    "BASH_MAX_OUTPUT_LENGTH",
    "MAX_MCP_OUTPUT_TOKENS",
    "MCP_TIMEOUT",
    "MCP_TOOL_TIMEOUT",
    "DISABLE_AUTO_COMPACT",
)
"""Claude Code / Anthropic SDK variables an executor gives the ``claude`` runtime when they are
set in its environment (credentials too: ``CLAUDE_CREDENTIALS``)."""

CLAUDE_SETTING_PREFIXES: tuple[str, ...] = (
    "ANTHROPIC_DEFAULT_",  # ANTHROPIC_DEFAULT_{OPUS,SONNET,HAIKU}_MODEL (+ _NAME, _DESCRIPTION…)
    "ANTHROPIC_CUSTOM_MODEL_OPTION",
    "VERTEX_REGION_",  # VERTEX_REGION_CLAUDE_<model>: a region per model
    "OTEL_",  # OpenTelemetry export, with CLAUDE_CODE_ENABLE_TELEMETRY
)


NEVER_PASSED: frozenset[str] = frozenset({"CLAUDE_CONFIG_DIR"})
"""Not passed even when asked by prefix: each agent keeps Claude Code's state (sessions to
resume) in its own home."""


def is_claude_setting(name: str) -> bool:
    if name in NEVER_PASSED:
        return False
    return name in _CLAUDE_SETTINGS or name.startswith(CLAUDE_SETTING_PREFIXES)


_CLAUDE_SETTINGS = frozenset((*CLAUDE_SETTINGS, *CLAUDE_CREDENTIALS))


def claude_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The Claude Code settings (credentials included) set in ``env``, to pass to a claude run.
    Empty values are passed too: ``ANTHROPIC_API_KEY=""`` is how a gateway user says "no key"."""
    return {name: value for name, value in env.items() if is_claude_setting(name)}


def network_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[name] for name in NETWORK_SETTINGS if name in env}


def secret_values(env: Mapping[str, str], names: Iterable[str] = SECRET_ENV) -> list[str]:
    """The values of the secret variables set in ``env`` (at least 6 characters: shorter ones
    would mask ordinary words)."""
    return [value for name in names if len(value := env.get(name, "")) >= 6]
