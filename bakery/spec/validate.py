"""Validation: the JSON schema first, then the semantic checks (``checks.py``).

jsonschema reports paths into the data; ``Document`` maps each path back to the YAML
node, so every message names file:line:column.

Before the schema, one pass over the data refuses what a schema cannot say, or what
jsonschema would let through: a control character in any string or key
(``control-character``), and an integer that YAML 1.1 read from something else than
decimal digits (``number-form``: ``010`` is 8, ``1:10:00`` is 4200, ``0x10`` is 16). The
schema's patterns mean what JSON Schema says they mean: ECMA-262 regular expressions, in
which ``$`` matches only at the very end (``ecma_to_python``); and an integer is an int,
never 2.0.
"""
from __future__ import annotations

import copy
import datetime
import difflib
import functools
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from ..errors import Diagnostic, Report, char_name
from ..resources import cluster_schema
from .loader import Document, dotted, shorten

_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "empty (null)"}

_dotted = dotted


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
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value.isoformat()}"
    if isinstance(value, bytes):
        return f"{len(value):,} bytes of binary data"
    text = str(value)
    if "PRIVATE" in text.upper() or "BEGIN " in text:
        return "what looks like a private key (not shown)"  # never echo a secret into a log
    if len(text) > 80:
        text = text[:60] + "…"
    return f"'{text}'"


def _read_as(value: Any, raw: str) -> str:
    """What YAML made of the plain scalar ``raw``: 'a number', 'the number 1.3', ..."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return "a number" if str(value) == raw else f"the number {value}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return "something else than text"  # pragma: no cover - a plain scalar is one of the above


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


# -- patterns: ECMA-262, as JSON Schema means them ----------------------------------------------
#
# JSON Schema 2020-12 (Validation, 6.3.3 "pattern"; Core, 6.4 "Regular Expressions"): a pattern
# is an ECMA-262 regular expression, not implicitly anchored. jsonschema hands it to Python's
# re.search as it is, and the two dialects differ where it matters for input from a user:
# - `$` without the m flag matches only at the end of the input (ECMA-262, 22.2.2.6
#   CompileAssertion, `Assertion :: $`: "If e = InputLength, return true. If multiline is
#   false, return false."); Python's `$` also matches before a final "\n", so "lab\n" passed
#   ^[a-z0-9]...$. The JSON-Schema-Test-Suite pins this in optional/ecmascript-regex.json
#   ("ECMA 262 regex $ does not match trailing newline").
# - `.` matches anything but the line terminators LF, CR, U+2028 and U+2029 (22.2.2.9);
#   Python's `.` anything but LF.
# - `\d`, `\w` are ASCII-only ([0-9], [A-Za-z0-9_]) and `\s` is WhiteSpace and LineTerminator
#   (22.2.2.9, CharacterClassEscape; 12.2 and 12.3): Python's are Unicode's digits, word
#   characters and isspace() (which has U+001C-U+001F and U+0085, and not U+FEFF).
# ecma_to_python rewrites these into Python's syntax with the ECMA meaning, and refuses the
# escapes it does not rewrite, so that a new pattern in the schema cannot silently mean
# something else (tests check every pattern of the schema translates).

_ECMA_SPACE = ("\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
               "\\ufeff")
_ECMA_CLASSES = {"d": "0-9", "w": "A-Za-z0-9_", "s": _ECMA_SPACE}
_ECMA_LINE_TERMINATORS = "\\n\\r\\u2028\\u2029"


def ecma_to_python(pattern: str) -> str:
    """An ECMA-262 pattern (no flags) as a Python pattern that matches the same strings."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1:i + 2]
            if e in _ECMA_CLASSES:
                out.append(_ECMA_CLASSES[e] if in_class else f"[{_ECMA_CLASSES[e]}]")
            elif e in ("D", "W", "S") and not in_class:
                out.append(f"[^{_ECMA_CLASSES[e.lower()]}]")
            elif e in ("D", "W", "S", "b", "B", "p", "P", "c", "k", ""):
                raise ValueError(f"the pattern {pattern!r} uses \\{e}, which ecma_to_python does not translate")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            if pattern[i + 1:i + 2] == "]" or pattern[i + 1:i + 3] == "^]":
                raise ValueError(f"the pattern {pattern!r} has [] or [^], which Python reads otherwise")
            in_class = True
        elif c == "$":
            c = "\\Z"
        elif c == ".":
            c = f"[^{_ECMA_LINE_TERMINATORS}]"
        out.append(c)
        i += 1
    return "".join(out)


@functools.cache
def compiled(pattern: str) -> re.Pattern:
    """The schema's pattern as a compiled Python regex with ECMA-262's meaning; match it
    with .search, as JSON Schema does."""
    return re.compile(ecma_to_python(pattern))


def _pattern_keyword(validator, pattern, instance, schema):
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not compiled(pattern).search(instance):
        yield ValidationError(f"{shorten(instance)!r} does not match {pattern!r}")


@functools.cache
def validator_class():
    """Draft 2020-12 with ECMA-262 patterns, and "integer" meaning an int: JSON Schema counts
    2.0 as an integer (Validation, 6.1.1), and `cpus: 2.0` would reach the templates as 2.0."""
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(Draft202012Validator, {"pattern": _pattern_keyword}, type_checker=types)


# -- the pass before the schema -------------------------------------------------------------------

# Characters no field takes: the control characters (Cc: C0, DEL, C1), the line and paragraph
# separators (Zl, Zp) and the invisible format characters (Cf: bidi overrides, zero-width
# characters, the BOM). A field the schema marks "x-multiline" takes newlines and tabs; none
# does today (every string of a cluster file is one line).
_REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
_MULTILINE_ALLOWED = "\n\t"

# An integer as YAML 1.1 and YAML 1.2 read alike: decimal digits, no leading zero. PyYAML's
# YAML 1.1 int resolver (yaml/resolver.py) reads much more:
#   [-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+
#   | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
# binary, octal (010 is 8), underscores dropped, hexadecimal and base 60 (1:10:00 is 4200).
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")


def _subschema(schema: dict | None, key: Any) -> dict | None:
    if not isinstance(schema, dict):
        return None
    if isinstance(key, int):
        items = schema.get("items")
        return items if isinstance(items, dict) else None
    sub = schema.get("properties", {}).get(key)
    if sub is None and isinstance(schema.get("additionalProperties"), dict):
        sub = schema["additionalProperties"]
    return sub


def _walk(value: Any, schema: dict | None, path: tuple) -> Iterator[tuple[tuple, Any, dict | None, bool]]:
    """(path, value, its schema or None, is_key) for every value and mapping key, in order."""
    yield path, value, schema, False
    if isinstance(value, dict):
        for key, sub in value.items():
            yield path + (key,), key, None, True
            yield from _walk(sub, _subschema(schema, key), path + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _walk(sub, _subschema(schema, i), path + (i,))


def _refused_char(text: str, allowed: str) -> int | None:
    if text.isprintable():  # False for every refused category (and a few harmless ones)
        return None
    for i, ch in enumerate(text):
        if ch not in allowed and unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return i
    return None


def _control_character(doc: Document, path: tuple, text: str, index: int, is_key: bool) -> Diagnostic:
    ch = text[index]
    what = "a control character" if unicodedata.category(ch) == "Cc" else "an invisible character"
    subject = f"key '{shorten(text)}' in {dotted(path[:-1])}" if is_key else dotted(path)
    at = "at its end" if index == len(text) - 1 and len(text) > 1 else f"at character {index + 1}"
    if ch == "\n" and index == len(text) - 1:
        hint = ("a block scalar (| or >) ends its value with a newline: write the value on the key's line, "
                "or use |- or >-")
    elif ch in "\n\r\u2028\u2029":
        hint = "write the value on one line"
    else:
        hint = "delete it; no field of a cluster file takes one"
    return Diagnostic("control-character", f"{subject} holds {what}, {char_name(ch)}, {at}",
                      doc.position(path, key=is_key), hint=hint)


def _number_form(doc: Document, path: tuple, raw: str, value: int) -> Diagnostic:
    body = raw.lstrip("+-")
    extra = ""
    if ":" in raw:
        what = "a base-60 (sexagesimal) number"
    elif body[:2] in ("0x", "0X"):
        what = "a hexadecimal number"
    elif body[:2] in ("0b", "0B"):
        what = "a binary number"
    elif body.startswith("0"):
        what = "an octal number"
        decimal = body.replace("_", "").lstrip("0") or "0"
        extra = f", or {'-' if raw.startswith('-') else ''}{decimal} if you meant it in decimal"
    else:
        what = "a number with its underscores left out"
    return Diagnostic("number-form", f"{dotted(path)} is {shorten(raw, 40)}, which YAML 1.1 reads as {what}, {value}",
                      doc.position(path), hint=f"write {value}{extra}")


def _prepass(doc: Document, schema: dict) -> tuple[list[Diagnostic], set[tuple], set[tuple]]:
    """Diagnostics, and the paths of the values and of the keys they are about (the schema's
    findings on those are left out: one line per problem)."""
    found: list[Diagnostic] = []
    values: set[tuple] = set()
    keys: set[tuple] = set()
    clean: set[int] = set()  # ids of strings found clean: an alias repeats one str object
    for path, value, sub, is_key in _walk(doc.data, schema, ()):
        if isinstance(value, str):
            allowed = _MULTILINE_ALLOWED if sub and sub.get("x-multiline") else ""
            if id(value) in clean and not allowed:
                continue
            index = _refused_char(value, allowed)
            if index is None:
                if not allowed:
                    clean.add(id(value))
                continue
            found.append(_control_character(doc, path, value, index, is_key))
            (keys if is_key else values).add(path)
        elif (isinstance(value, int) and not isinstance(value, bool) and sub is not None
              and "integer" in _types(sub)):
            raw = doc.plain_scalars.get(path)
            if raw is not None and not _DECIMAL.fullmatch(raw):
                found.append(_number_form(doc, path, raw, value))
                values.add(path)
    return found, values, keys


# -- the schema's findings ------------------------------------------------------------------------

def _type_hint(doc: Document, path: tuple, schema: dict, value: Any) -> str:
    """What YAML read, and what to write instead, for a value of the wrong type that YAML made
    from a plain scalar ("YAML read 1.36 as a number; quote it")."""
    raw = doc.plain_scalars.get(path)
    if raw is None or isinstance(value, str):
        return ""
    types = _types(schema)
    if "string" in types:
        if raw == "" and value is None:
            return "the value is missing: write it after the colon"
        return f'YAML read {shorten(raw, 40)} as {_read_as(value, raw)}; quote it: "{shorten(raw, 40)}"'
    if "integer" in types and isinstance(value, float):
        if value.is_integer():
            return f"YAML read {shorten(raw, 40)} as a decimal number; write {int(value)}"
        return "write a whole number"
    return ""


def _schema_error(doc: Document, err, claimed_keys: set[tuple]) -> list[Diagnostic]:
    path = tuple(err.absolute_path)
    where = _dotted(path)
    v = err.validator
    schema = err.schema
    pos = doc.position(path)
    if v == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(schema.get("properties", {}))
        unknown = [key for key in err.instance if key not in allowed]
        out = []
        for key in unknown:
            if path + (key,) in claimed_keys:
                continue  # reported as a control character already
            hint = _suggest(key, allowed) or ("allowed here: " + ", ".join(allowed) if allowed else "")
            out.append(Diagnostic("schema-unknown-field", f"unknown field '{shorten(key)}' in {where}",
                                  doc.position(path + (key,), key=True), hint=hint))
        if unknown:
            return out
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        desc = schema.get("properties", {}).get(missing, {}).get("description", "")
        hint = f"add {missing}: {desc}" if desc else f"add {missing}"
        return [Diagnostic("schema-required", f"{where} is missing the required field '{missing}'", pos, hint=hint)]
    if v == "type":
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in _types(schema))
        hint = _type_hint(doc, path, schema, err.instance)
        return [Diagnostic("schema-type", f"{where} must be {want}, not {_describe(err.instance)}", pos, hint=hint)]
    if v in ("enum", "const"):
        choices = schema["enum"] if v == "enum" else [schema["const"]]
        hint = _suggest(err.instance, choices)
        one_of = ", ".join("null (the default)" if c is None else str(c) for c in choices)
        text = f"{where} is {_describe(err.instance)}, which is not one of: {one_of}"
        return [Diagnostic("schema-enum", text, pos, hint=hint)]
    if v == "pattern":
        expected = schema.get("x-expected", f"text matching {schema['pattern']}")
        if path and isinstance(path[-1], str) and err.instance == path[-1] and "propertyNames" in str(err.schema_path):
            pos = doc.position(path, key=True)
        return [Diagnostic("schema-format", f"{where} is {_describe(err.instance)}, not {expected}", pos)]
    if v == "minItems" and not err.instance:
        return [Diagnostic("schema-minitems", f"{where} is empty", pos, hint=schema.get("description", ""))]
    if v in ("maxLength", "minLength"):
        bound = "longer than the" if v == "maxLength" else "shorter than the"
        return [Diagnostic(f"schema-{v.lower()}", f"{where} is {_describe(err.instance)}, {bound} "
                           f"{'maximum' if v == 'maxLength' else 'minimum'} of {schema[v]} characters", pos,
                           hint=schema.get("description", ""))]
    if v in ("minItems", "maxItems", "uniqueItems", "minimum", "maximum"):
        return [Diagnostic(f"schema-{v.lower()}", f"{where}: {err.message}", pos,
                           hint=schema.get("description", ""))]
    return [Diagnostic(f"schema-{v.lower()}", f"{where}: {err.message}", pos)]


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    schema = cluster_schema()
    found, claimed, claimed_keys = _prepass(doc, schema)
    for err in validator_class()(schema).iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if path in claimed:
            continue
        if err.validator == "propertyNames":
            # the key itself is wrong: report it at the key, with the sub-error's wording
            for sub in err.context or []:
                key = sub.instance
                if path + (key,) in claimed_keys:
                    continue
                expected = sub.schema.get("x-expected", "a valid key")
                found.append(Diagnostic("schema-format",
                                        f"key '{shorten(str(key))}' in {_dotted(path)} is not {expected}",
                                        doc.position(path + (key,), key=True)))
            continue
        found.extend(_schema_error(doc, err, claimed_keys))
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
    # An "x-verbatim" value (a document of another program's, such as an audit Policy) is
    # passed on as written: a default filled in could change what it means to its reader.
    if schema.get("x-verbatim"):
        return
    if isinstance(value, dict):
        props = schema.get("properties", {})
        # "x-default-choice": an object whose keys are alternatives (spec.cni): the named one,
        # with its defaults, when none is given; nothing is added beside one that is given.
        choice = schema.get("x-default-choice")
        if choice and not any(key in value for key in props):
            value[choice] = {}
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
