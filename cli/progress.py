"""Progress of long operations (``--wait``, project init and sync, ``swarm up``'s start-up) on
stderr: on a terminal one short live line, rewritten in place; otherwise (a pipe, a log file,
CI) plain lines, one per step, so nothing is lost and no control characters are written."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

CLEAR = "\r\x1b[K"  # back to the start of the line, erase it


class Progress:
    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self._is_terminal() if live is None else live
        self._showing = False  # a live line is on screen
        self._last = ""  # the last plain line printed

    def _is_terminal(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def step(self, text: str, ticker: str = "") -> None:
        """What is happening now: replaces the live line (a terminal); otherwise one more line
        when ``text`` differs from the last one. ``ticker`` (an elapsed time, a count that
        moves) is shown on the live line only, so plain output gets no line per tick."""
        text = " ".join(text.split())
        if not self.live:
            if text != self._last:
                print(text, file=self.stream, flush=True)
                self._last = text
            return
        text = f"{text} {ticker}" if ticker else text
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        shown = text if len(text) <= width else text[: width - 1] + "…"
        self.stream.write(CLEAR + shown)
        self.stream.flush()
        self._showing = True

    def note(self, text: str) -> None:
        """A line that stays (a warning, a reconnect): printed above the live line."""
        self.clear()
        print(text, file=self.stream, flush=True)

    def clear(self) -> None:
        """Remove the live line (before the command prints its answer)."""
        if self._showing:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._showing = False
