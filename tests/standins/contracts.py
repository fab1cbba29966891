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
