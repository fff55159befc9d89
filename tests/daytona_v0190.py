"""What an open-source Daytona v0.190 server sends, as JSON Schema: ``contracts/daytona_v0190.json``
(committed, so the contract tests run anywhere) and how it is derived from v0.190's published
sources (the REST API's generated Python models, the toolbox's ``swagger.json``, the error
filters), so a test can check the committed file against them where they are at hand.

    python tests/daytona_v0190.py <dir of the v0.190 reference>   # rewrites the committed file

Only field names, types and which are required are taken: no code or text of the sources.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).parent / "contracts" / "daytona_v0190.json"
REST_MODELS = {  # definition -> the generated model's file (api-client-models/)
    "Sandbox": "sandbox.py",
    "SandboxListItem": "sandbox_list_item.py",
    "ListSandboxesResponse": "list_sandboxes_response.py",
}
ENUMS = {"SandboxState": "sandbox_state.py", "SandboxDesiredState": "sandbox_desired_state.py"}
TOOLBOX = (  # swagger definitions of the toolbox answers the backend reads
    "WorkDirResponse",
    "UserHomeDirResponse",
    "ExecuteResponse",
    "Session",
    "Command",
    "SessionExecuteResponse",
    "SessionCommandLogsResponse",
    "GitStatus",
)
# Written from the sources rather than generated: the error bodies (the API's exception filter;
# the proxy's and daemon's error middleware), and the toolbox-proxy-url DTO.
HANDWRITTEN: dict[str, Any] = {
    "ToolboxProxyUrl": {
        "type": "object",
        "required": ["url"],
        "properties": {"url": {"type": "string"}},
        "additionalProperties": False,
    },
    "ApiError": {
        "type": "object",
        "required": ["path", "timestamp", "statusCode", "error", "message"],
        "properties": {
            "path": {"type": "string"},
            "timestamp": {"type": "string"},
            "statusCode": {"type": "integer"},
            "error": {"type": "string"},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "ToolboxError": {
        "type": "object",
        "required": ["statusCode", "message", "timestamp", "path"],
        "properties": {
            "statusCode": {"type": "integer"},
            "message": {"type": "string"},
            "code": {"type": "string"},
            "timestamp": {"type": "string"},
            "path": {"type": "string"},
            "method": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "Config": {  # what Swarm reads of /config (the rest is the SDK models' to check)
        "type": "object",
        "required": ["version"],
        "properties": {"version": {"type": "string"}},
    },
}
SCALARS = {
    "StrictStr": {"type": "string"},
    "StrictBool": {"type": "boolean"},
    "StrictInt": {"type": "integer"},
    "StrictFloat": {"type": "number"},
    "Any": {},
    "str": {"type": "string"},
}


def _annotation(node: ast.expr, enums: dict[str, list[str]]) -> dict[str, Any]:
    """A pydantic field annotation (as the generator writes them) as JSON Schema."""
    if isinstance(node, ast.Name):
        if node.id in SCALARS:
            return dict(SCALARS[node.id])
        if node.id in enums:
            return {"type": "string", "enum": enums[node.id]}
        if node.id in REST_MODELS:
            return {"$ref": f"#/definitions/{node.id}"}
        return {}  # another model (BuildInfo, SandboxVolume...): not checked here
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        kind = node.value.id
        inner = node.slice
        parts = list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
        if kind == "Optional":
            return {"anyOf": [_annotation(parts[0], enums), {"type": "null"}]}
        if kind == "Union":
            types = [_annotation(p, enums) for p in parts]
            if all(t.get("type") in ("number", "integer") for t in types):
                return {"type": "number"}
            return {"anyOf": types}
        if kind == "List":
            return {"type": "array", "items": _annotation(parts[0], enums)}
        if kind == "Dict":
            return {"type": "object", "additionalProperties": _annotation(parts[1], enums)}
    return {}


def _enum(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    values = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                values.append(str(node.value.value))
    return [v for v in values if v != "unknown_default_open_api"]


def _model(path: Path, enums: dict[str, list[str]]) -> dict[str, Any]:
    """A generated REST model: its fields (by their JSON names), their types, which are
    required; nothing else allowed (v0.190 sends nothing else)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name.startswith("_") or name == "additional_properties":
            continue
        alias, has_default = name, False
        value = node.value
        if isinstance(value, ast.Call):
            for keyword in value.keywords:
                if keyword.arg == "serialization_alias" and isinstance(keyword.value, ast.Constant):
                    alias = str(keyword.value.value)
                if keyword.arg == "default":
                    has_default = True
        elif value is not None:
            has_default = True
        properties[alias] = _annotation(node.annotation, enums)
        if not has_default:
            required.append(alias)
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def _swagger(definition: dict[str, Any]) -> dict[str, Any]:
    """A swagger 2.0 definition as JSON Schema: types, refs, required, nothing else allowed (the
    daemon writes exactly its structs' fields); no prose."""
    kept: dict[str, Any] = {"additionalProperties": False} if "properties" in definition else {}
    for key, value in definition.items():
        if key in ("description", "example", "x-enum-varnames"):
            continue
        if key == "properties":
            kept[key] = {name: _swagger(prop) for name, prop in value.items()}
        elif key == "items":
            kept[key] = _swagger(value)
        else:
            kept[key] = value
    return kept


def from_reference(ref: Path) -> dict[str, Any]:
    """The schema as v0.190's sources say it (``ref``: the reference directory)."""
    models = ref / "api-client-models"
    enums = {name: _enum(models / file) for name, file in ENUMS.items()}
    definitions: dict[str, Any] = {
        name: _model(models / file, enums) for name, file in REST_MODELS.items()
    }
    swagger = json.loads((ref / "toolbox" / "swagger.json").read_text())["definitions"]
    wanted = list(TOOLBOX)
    while wanted:
        name = wanted.pop()
        if name in definitions:
            continue
        definitions[name] = _swagger(swagger[name])
        text = json.dumps(swagger[name])
        wanted += [
            other for other in swagger if f'"#/definitions/{other}"' in text and other != name
        ]
    definitions.update(HANDWRITTEN)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "What an open-source Daytona v0.190 server sends (the parts Swarm reads)",
        "definitions": dict(sorted(definitions.items())),
    }


def reference_dir() -> Path | None:
    """Where the v0.190 reference is on this machine (``DAYTONA_V0190_REF``, or the shared
    reference beside the checkout), if anywhere."""
    named = os.environ.get("DAYTONA_V0190_REF")
    candidates = [Path(named)] if named else []
    root = Path(__file__).resolve().parent.parent
    candidates += [
        p / "shared" / "ref" / "daytona-v0.190" for p in (root.parent, root.parent.parent)
    ]
    return next((p for p in candidates if (p / "toolbox" / "swagger.json").exists()), None)


def load() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else reference_dir()
    if source is None:
        raise SystemExit("no v0.190 reference: name its directory")
    SCHEMA_FILE.parent.mkdir(exist_ok=True)
    SCHEMA_FILE.write_text(json.dumps(from_reference(source), indent=2) + "\n")
    print(f"wrote {SCHEMA_FILE}")
