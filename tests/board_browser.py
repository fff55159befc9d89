"""The board in a real browser: Debian's Chromium (or any Chromium/Chrome on PATH) driven by
Playwright for Python. Playwright's own browser download is not used: ``executable_path`` names
the system binary.

- ``chromium_path()``: ``SWARM_CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on PATH (None:
  none; ``./dev test`` installs Debian's when it can, see the README).
- ``Browser``: one Chromium for a module; ``page()`` opens a fresh context (its own cookies)
  whose console errors and page errors are collected (``problems``), so a test can assert there
  were none.
- ``sign_in(page, url, token)``: through the sign-in form, as a person would.
- ``shell_gate(path)``: a shell task's script that waits for a file (the test creates it to let
  the task finish), so a test can watch a task while it runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_CHROMIUM = (
    "no Chromium found (SWARM_CHROMIUM, or one of {names} on PATH); on Debian: "
    "apt-get install -y chromium (./dev test does it when run as root)"
)


def chromium_path() -> str | None:
    given = os.environ.get("SWARM_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def no_chromium_reason() -> str:
    return NO_CHROMIUM.format(names=", ".join(CHROMIUM_NAMES))


@dataclass
class Browser:
    """One Chromium; pages whose console errors and uncaught exceptions are kept."""

    executable: str
    problems: list[str] = field(default_factory=list)
    _playwright: Any = None
    _browser: Any = None

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=self.executable)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    def page(self, **context: Any) -> Any:
        """A new page in a context of its own (no cookies shared with other pages)."""
        page = self._browser.new_context(**context).new_page()

        def on_console(message: Any) -> None:
            if message.type in ("error", "warning"):
                self.problems.append(f"console {message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        return page


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#live[data-state=live], #main .empty")


def shell_gate(path: Path, say: str = "working") -> str:
    """A shell task's prompt: print ``say``, wait until ``path`` exists, print done."""
    quoted = shlex.quote(str(path))
    return f"echo {shlex.quote(say)}; while [ ! -e {quoted} ]; do sleep 0.05; done; echo done"
