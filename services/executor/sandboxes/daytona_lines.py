"""Which Daytona servers Swarm supports, with which ``daytona`` SDK, and whether the pair at hand
fits. Pure: the probe (``daytona.py``) gathers the facts, ``judge`` decides.

Two lines are supported:

- **hosted** -- Daytona's hosted service (app.daytona.io) with the current SDK (the default
  install; tested with the SDK locked in ``uv.lock``, 0.226);
- **open-source** -- a self-hosted open-source Daytona, whose last public release is v0.190, with
  the SDK of that release, 0.190.x (the ``daytona-oss`` install extra).

A newer SDK cannot read an open-source v0.190 server: its models require fields v0.190 never
sends (``kvm`` in a sandbox, ``networkBlockAll`` in a list item), so every call fails. The probe
sees that before any task does and names the fix.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Line = Literal["hosted", "open-source", "unknown"]

OPEN_SOURCE = (0, 190)  # the last public release of Daytona: what a self-hosted server runs
HOSTED_SDK = (0, 226)  # the oldest SDK tested against the hosted service
# What an open-source v0.190 server leaves out that newer SDKs require (model -> JSON fields).
V0190_LACKS: Mapping[str, frozenset[str]] = {
    "Sandbox": frozenset({"kvm"}),
    "SandboxListItem": frozenset({"networkBlockAll"}),
}
FIX = {
    "open-source": "install Swarm with the daytona-oss extra (`uv sync --extra daytona-oss`, or "
    "`pip install 'swarm[daytona-oss]'`: daytona 0.190.x)",
    "hosted": "install Swarm without the daytona-oss extra (`uv sync`: the current daytona SDK)",
}


def version(text: str | None) -> tuple[int, int, int] | None:
    """``v0.190.0`` / ``0.190.1-rc`` -> (0, 190, 0); None for anything else (``0.0.0-dev``)."""
    if not text:
        return None
    found = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if found is None:
        return None
    parsed = (int(found[1]), int(found[2]), int(found[3] or 0))
    return None if parsed == (0, 0, 0) else parsed


def sdk_line(sdk_version: str | None) -> Line:
    parsed = version(sdk_version)
    if parsed is None:
        return "unknown"
    if parsed[:2] == OPEN_SOURCE:
        return "open-source"
    if parsed[:2] >= HOSTED_SDK:
        return "hosted"
    return "unknown"


def server_line(server_version: str | None, api_url: str = "") -> Line:
    """The hosted service is known by its address (``*.daytona.io``); an open-source server by
    its version (the 0.190 line: the last public release). Anything else cannot be told from
    what it says: its answers decide."""
    host = (urllib.parse.urlsplit(api_url).hostname or "").lower()
    if host == "daytona.io" or host.endswith(".daytona.io"):
        return "hosted"
    parsed = version(server_version)
    if parsed is not None and parsed[:2] == OPEN_SOURCE:
        return "open-source"
    return "unknown"


@dataclass(frozen=True)
class Verdict:
    fits: bool
    message: str  # what was found; when it does not fit, what to do
    server: Line = "unknown"
    sdk: Line = "unknown"


def judge(
    *,
    api_url: str,
    sdk_version: str | None,
    server_version: str | None,
    required: Mapping[str, frozenset[str]],
    samples: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
) -> Verdict:
    """Whether the installed SDK (``sdk_version``; ``required``: the JSON fields its models
    require, by model) fits the server at ``api_url`` (``server_version`` from its /config;
    ``samples``: raw objects it sent, by model)."""
    sdk, server = sdk_line(sdk_version), server_line(server_version, api_url)
    missing = sorted(
        {
            f"{model}.{name}"
            for model, items in (samples or {}).items()
            for item in items
            for name in required.get(model, frozenset())
            if name not in item
        }
    )
    said = f"Daytona at {api_url} (server {server_version or 'version unknown'})"
    sdk_said = f"the installed daytona SDK {sdk_version or '(version unknown)'}"
    if missing:
        fix = FIX["hosted" if server == "hosted" else "open-source"]
        return Verdict(
            False,
            f"{said} does not send {', '.join(missing)}, which {sdk_said} requires: the SDK "
            f"line does not match the server; {fix}",
            server,
            sdk,
        )
    if server == "open-source":
        lacking = sorted(
            f"{model}.{name}"
            for model, names in V0190_LACKS.items()
            for name in names & required.get(model, frozenset())
        )
        if lacking:
            return Verdict(
                False,
                f"{said} is the open-source line, which does not send {', '.join(lacking)}; "
                f"{sdk_said} requires them: {FIX['open-source']}",
                server,
                sdk,
            )
    if server == "hosted" and sdk == "open-source":
        return Verdict(
            False,
            f"{said} is the hosted line; {sdk_said} is the open-source line (for a "
            f"self-hosted v0.190 server): {FIX['hosted']}",
            server,
            sdk,
        )
    if server == "unknown":
        return Verdict(
            True,
            f"{said}: its line cannot be told from its address or version; {sdk_said} is used "
            f"as it is (a mismatch shows as a clear failure on the first call)",
            server,
            sdk,
        )
    return Verdict(True, f"{said} fits {sdk_said} ({server} line)", server, sdk)
