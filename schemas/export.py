"""The wire contract as JSON Schema files in ``schemas/json/``, one per message type.

``python -m schemas.export`` writes them; ``python -m schemas.export --check`` writes nothing
and exits 1 naming every file that is stale, missing or extra. The files are generated from the
msgspec Structs (the Structs are the source of truth) and are byte-for-byte deterministic:
sorted keys, two-space indent, a trailing newline.

Files: ``<type>.json`` for every event (``task.claimed.json``), ``event.json`` (any event, by
its ``type``) and ``board.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.board import Board, TaskView, tasks_schema_hook
from schemas.events import EVENT_TYPES, AnyEvent

JSON_DIR = Path(__file__).parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _normalised(node: Any) -> Any:
    """The schema in one canonical form, whichever msgspec release made it: releases differ in
    how they dedent docstrings (every ``description`` goes through ``inspect.cleandoc``) and in
    the order of ``anyOf`` alternatives (sorted; the order means nothing in JSON Schema)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                out[key] = inspect.cleandoc(value)
            elif key == "anyOf" and isinstance(value, list):
                items = [_normalised(item) for item in value]
                out[key] = sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
            else:
                out[key] = _normalised(value)
        return out
    if isinstance(node, list):
        return [_normalised(item) for item in node]
    return node


def _document(tp: Any, title: str, description: str) -> dict[str, Any]:
    schema = _normalised(msgspec.json.schema(tp))
    return {"$schema": DIALECT, "title": title, "description": description, **schema}


def _board_document() -> dict[str, Any]:
    """The board as read: a swarm's ``tasks`` (``Tasks``) is an object of ``TaskView``."""
    (board, _), components = msgspec.json.schema_components(
        (Board, TaskView), schema_hook=tasks_schema_hook
    )
    description = (
        "The folded state of the event log. A snapshot stores it as msgpack, with each swarm's "
        "tasks in their own form (settled finished tasks as compact records): see "
        "docs/architecture.md"
    )
    schema = _normalised({**board, "$defs": components})
    return {"$schema": DIALECT, "title": "board", "description": description, **schema}


def documents() -> dict[str, dict[str, Any]]:
    """Every schema document, by file name."""
    docs: dict[str, dict[str, Any]] = {}
    for event_type, cls in EVENT_TYPES.items():
        aggregate, verb = event_type.split(".", 1)
        docs[f"{event_type}.json"] = _document(
            cls,
            event_type,
            f"Event {event_type}, published on swarm.evt.<swarm>.{aggregate}.<id>.{verb}",
        )
    docs["event.json"] = _document(
        AnyEvent, "event", "Any event on swarm.evt.>, told apart by its type field"
    )
    docs["board.json"] = _board_document()
    return docs


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def expected() -> dict[str, str]:
    """The content every file should have, by file name."""
    return {name: render(doc) for name, doc in sorted(documents().items())}


def problems(directory: Path = JSON_DIR) -> list[str]:
    """What differs between ``directory`` and the generated files (empty: up to date)."""
    want = expected()
    have = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    found: list[str] = []
    for name, content in want.items():
        if name not in have:
            found.append(f"missing: {name}")
        elif (directory / name).read_text(encoding="utf-8") != content:
            found.append(f"stale: {name}")
    found.extend(f"extra: {name}" for name in sorted(have - want.keys()))
    return found


def write(directory: Path = JSON_DIR) -> list[str]:
    """Write every file that differs and remove extra ones; returns the names touched."""
    directory.mkdir(parents=True, exist_ok=True)
    want = expected()
    touched: list[str] = []
    for name, content in want.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            touched.append(name)
    for path in sorted(directory.glob("*.json")):
        if path.name not in want:
            path.unlink()
            touched.append(path.name)
    return touched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description="Export the wire contract as JSON Schema."
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help="where the files live")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.dir)
        for line in found:
            print(line)
        if found:
            print("run: python -m schemas.export", file=sys.stderr)
        return 1 if found else 0
    for name in write(args.dir):
        print(f"wrote: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
