"""The contracts of Kubernetes' configuration files, from the vendored field trees
(tests/data/specs/, with their upstream sources in its README). Used by the stand-ins and by
the tests alike: strict decoding of kubeadm's v1beta4 and v1beta3 kinds and the kubelet's
KubeletConfiguration (an unknown field, a wrong type, a wrong apiVersion or kind is an error:
kubeadm's own decoder warns on unknown fields, this is stricter), and Calico's Installation
against its CRD's openAPIV3Schema with unknown fields forbidden."""
from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

SPECS = Path(__file__).resolve().parent.parent / "data" / "specs"
# The kubelet's field tree is vendored with bakery itself (it checks spec.kubernetes.kubelet
# against it); its source is in tests/data/specs/README.md with the others.
PRODUCT_SPECS = {"kubelet-config-v1beta1.json": Path(__file__).resolve().parents[2] / "schemas"}
KUBEADM_SPECS = ("kubeadm-v1beta4.json", "kubeadm-v1beta3.json")


GO_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def check_value(value, spec: dict, path: str) -> list[str]:
    t = spec["type"]
    bad = [f"{path}: {value!r} is not {t}"]
    if t == "string":
        if not isinstance(value, str):
            return bad
        if "enum" in spec and value not in spec["enum"]:
            return [f"{path}: {value!r} is not one of {spec['enum']}"]
        return []
    if t == "int":
        return [] if isinstance(value, int) and not isinstance(value, bool) else bad
    if t == "float":
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else bad
    if t == "bool":
        return [] if isinstance(value, bool) else bad
    if t == "duration":
        return [] if isinstance(value, str) and GO_DURATION.match(value) else bad
    if t == "time":
        return [] if isinstance(value, str) and RFC3339.match(value) else bad
    if t == "quantity":
        return [] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else bad
    if t == "object":
        if not isinstance(value, dict):
            return bad
        return check_fields(value, spec.get("fields", {}), path) if "fields" in spec else []
    if t == "[]object":
        if not isinstance(value, list):
            return bad
        return [e for i, item in enumerate(value)
                for e in (check_fields(item, spec["fields"], f"{path}[{i}]") if isinstance(item, dict)
                          else [f"{path}[{i}]: not an object"])]
    if t.startswith("[]"):
        inner = {"type": t[2:]}
        if not isinstance(value, list):
            return bad
        return [e for i, item in enumerate(value) for e in check_value(item, inner, f"{path}[{i}]")]
    if t.startswith("map[string]"):
        inner = {"type": t[len("map[string]"):]}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return bad
        return [e for k, v in value.items() for e in check_value(v, inner, f"{path}.{k}")]
    raise AssertionError(f"unknown spec type {t} at {path}")


def check_fields(obj: dict, fields: dict, path: str) -> list[str]:
    errors = []
    for key, value in obj.items():
        if key not in fields:
            errors.append(f"{path}.{key}: unknown field")
        else:
            errors += check_value(value, fields[key], f"{path}.{key}")
    return errors


@functools.cache
def spec(name: str) -> dict:
    return json.loads((PRODUCT_SPECS.get(name, SPECS) / name).read_text())


def validate_kube_doc(doc: dict) -> list[str]:
    api = doc.get("apiVersion")
    for name in KUBEADM_SPECS:
        if api == spec(name)["apiVersion"]:
            kinds = spec(name)["kinds"]
            if doc.get("kind") not in kinds:
                return [f"kind {doc.get('kind')} is not a kind of {api}"]
            return check_fields(doc, kinds[doc["kind"]]["fields"], doc["kind"])
    if api == spec("kubelet-config-v1beta1.json")["apiVersion"]:
        s = spec("kubelet-config-v1beta1.json")
        if doc.get("kind") != s["kind"]:
            return [f"kind {doc.get('kind')} is not {s['kind']}"]
        return check_fields(doc, s["fields"], doc["kind"])
    return [f"apiVersion {api} has no vendored spec"]


def strict(schema):
    """The CRD schema with unknown fields forbidden, as the API server prunes/rejects them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


def validate_installation(doc: dict) -> list[str]:
    import jsonschema

    s = spec("calico-installation-crd-openapi.json")
    errors = []
    if doc.get("apiVersion") != s["apiVersion"] or doc.get("kind") != s["kind"]:
        errors.append(f"{doc.get('apiVersion')}/{doc.get('kind')} is not {s['apiVersion']}/{s['kind']}")
    schema = strict(s["schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    if doc.get("metadata", {}).get("name") != "default":  # the CRD's x-kubernetes-validations rule
        errors.append("metadata.name must be 'default'")
    return errors


# -- systemd unit settings ----------------------------------------------------------------
# How systemd reads Environment= (src/core/load-fragment.c, config_parse_environ): the value is
# split into words by extract_first_word(EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE): whitespace
# separates words, single or double quotes group, a backslash starts a C escape; each word's
# % specifiers are then expanded (src/shared/specifier.c: "%%" is a literal %). "$" is not
# special. Stricter than systemd: an escape or a specifier bakery never means is an error.
_C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b",
              "f": "\f", "v": "\v", "s": " "}


class UnitSyntaxError(ValueError):
    pass


def systemd_words(rvalue: str) -> list[str]:
    words: list[str] = []
    word: list[str] | None = None
    quote = None
    i = 0
    while i < len(rvalue):
        c = rvalue[i]
        if quote is None and c in " \t":
            if word is not None:
                words.append("".join(word))
                word = None
            i += 1
            continue
        if word is None:
            word = []
        if c == "\\":
            if i + 1 >= len(rvalue) or rvalue[i + 1] not in _C_ESCAPES:
                raise UnitSyntaxError(f"unknown escape at {i} in {rvalue!r}")
            word.append(_C_ESCAPES[rvalue[i + 1]])
            i += 2
            continue
        if quote is None and c in "\"'":
            quote = c
        elif c == quote:
            quote = None
        else:
            word.append(c)
        i += 1
    if quote is not None:
        raise UnitSyntaxError(f"unbalanced quotes in {rvalue!r}")
    if word is not None:
        words.append("".join(word))
    return [_specifiers(w) for w in words]


def _specifiers(word: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word[i] == "%":
            if word[i + 1:i + 2] != "%":
                raise UnitSyntaxError(f"specifier %{word[i + 1:i + 2]} in {word!r}: bakery writes none")
            out.append("%")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file or drop-in as systemd's parser reads it (src/shared/conf-parser.c): [Section]
    headers, KEY=VALUE lines, # and ; comments, blank lines; a trailing backslash continues a
    line. Settings outside a section, or a line that is neither, are errors."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UnitSyntaxError(f"bad section header {line!r}")
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        if current is None:
            raise UnitSyntaxError(f"{line!r} is outside of any section")
        key, eq, value = line.partition("=")
        if not eq:
            raise UnitSyntaxError(f"{line!r} is not KEY=VALUE")
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_environment(text: str) -> dict[str, str]:
    """The variables the [Service] Environment= lines of a unit or drop-in set."""
    env: dict[str, str] = {}
    for key, value in unit_sections(text).get("Service", []):
        if key != "Environment":
            continue
        if not value:
            env.clear()
            continue
        for word in systemd_words(value):
            name, eq, val = word.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise UnitSyntaxError(f"Environment= word {word!r} is not NAME=value")
            env[name] = val
    return env
