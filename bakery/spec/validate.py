"""Validation: the JSON schema first, then the semantic checks (``checks.py``).

jsonschema reports paths into the data; ``Document`` maps each path back to the YAML
node, so every message names file:line:column.
"""
from __future__ import annotations

import copy
import difflib
from typing import Any

from ..errors import Diagnostic, Report
from ..resources import cluster_schema
from .loader import Document

_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "empty (null)"}


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = str(value)
    if "PRIVATE" in text.upper() or "BEGIN " in text:
        return "what looks like a private key (not shown)"  # never echo a secret into a log
    if len(text) > 80:
        text = text[:60] + "…"
    return f"'{text}'"


def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _suggest(word: str, choices) -> str:
    choices = [str(c) for c in choices]
    for c in choices:
        if c.lower() == str(word).lower():
            return f"did you mean '{c}'?"
    match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else ""


def _schema_error(doc: Document, err) -> list[Diagnostic]:
    path = tuple(err.absolute_path)
    where = _dotted(path)
    v = err.validator
    schema = err.schema
    pos = doc.position(path)
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(schema.get("properties", {}))
        out = []
        for key in err.instance:
            if key in allowed:
                continue
            hint = _suggest(key, allowed) or ("allowed here: " + ", ".join(allowed) if allowed else "")
            out.append(Diagnostic("schema-unknown-field", f"unknown field '{key}' in {where}",
                                  doc.position(path + (key,), key=True), hint=hint))
        if out:
            return out
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = schema.get("properties", {}).get(missing, {}).get("description", "")
        hint = f"add {missing}: {desc}" if desc else f"add {missing}"
        return [Diagnostic("schema-required", f"{where} is missing the required field '{missing}'", pos, hint=hint)]
    if v == "type":
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in _types(schema))
        hint = ""
        raw = doc.plain_scalars.get(path)
        if "string" in _types(schema) and raw is not None and not isinstance(err.instance, str):
            hint = f'YAML read {raw} as {_describe(err.instance).split(" ")[0]}; quote it: "{raw}"'
        return [Diagnostic("schema-type", f"{where} must be {want}, not {_describe(err.instance)}", pos, hint=hint)]
    if v in ("enum", "const"):
        choices = schema["enum"] if v == "enum" else [schema["const"]]
        hint = _suggest(err.instance, choices)
        one_of = ", ".join(str(c) for c in choices)
        text = f"{where} is {_describe(err.instance)}, which is not one of: {one_of}"
        return [Diagnostic("schema-enum", text, pos, hint=hint)]
    if v == "pattern":
        expected = schema.get("x-expected", f"text matching {schema['pattern']}")
        if path and isinstance(path[-1], str) and err.instance == path[-1] and "propertyNames" in str(err.schema_path):
            pos = doc.position(path, key=True)
        return [Diagnostic("schema-format", f"{where} is {_describe(err.instance)}, not {expected}", pos)]
    if v == "minItems" and not err.instance:
        return [Diagnostic("schema-minitems", f"{where} is empty", pos, hint=schema.get("description", ""))]
    if v in ("minItems", "maxItems", "uniqueItems", "minimum", "maximum", "maxLength", "minLength"):
        return [Diagnostic(f"schema-{v.lower()}", f"{where}: {err.message}", pos,
                           hint=schema.get("description", ""))]
    return [Diagnostic(f"schema-{v.lower()}", f"{where}: {err.message}", pos)]


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(cluster_schema())
    found: list[Diagnostic] = []
    for err in validator.iter_errors(doc.data):
        if err.validator == "propertyNames":
            # the key itself is wrong: report it at the key, with the sub-error's wording
            for sub in err.context or []:
                key = sub.instance
                expected = sub.schema.get("x-expected", "a valid key")
                path = tuple(err.absolute_path) + (key,)
                found.append(Diagnostic("schema-format",
                                        f"key '{key}' in {_dotted(err.absolute_path)} is not {expected}",
                                        doc.position(path, key=True)))
            continue
        found.extend(_schema_error(doc, err))
    return _sorted(found)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in sorted(diags, key=lambda d: (d.position.line, d.position.column) if d.position else (0, 0)):
        if str(d) not in seen:
            seen.add(str(d))
            out.append(d)
    return out


def fill_defaults(data: Any, schema: dict | None = None) -> Any:
    """A copy of (schema-valid) data with every schema default filled in, recursively."""
    schema = cluster_schema() if schema is None else schema
    data = copy.deepcopy(data)
    _fill(data, schema)
    return data


def _fill(value: Any, schema: dict) -> None:
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _fill(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(item, schema["items"])


def validate(doc: Document) -> tuple[Report, dict | None]:
    """Schema, then (only if the schema passed) semantic checks. Returns the report and the
    data with defaults filled (None if the schema failed)."""
    report = Report(schema_diagnostics(doc))
    if report.errors:
        return report, None
    data = fill_defaults(doc.data)
    from .checks import run_checks

    report.diagnostics.extend(_sorted(run_checks(doc, data)))
    return report, data
