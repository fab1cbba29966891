"""Check Packer HCL2 files the way Packer and its plugins decode them, offline.

python-hcl2 parses the files; each source, provisioner and post-processor body is then
checked, recursively, against the component's HCL2 spec (tests/data/specs/packer-*.json,
derived from the plugins' generated *.hcl2spec.go; see tests/data/specs/README.md): an
attribute or block the spec does not have fails, a deprecated one fails, a literal of the
wrong type fails, a block written as an attribute (or the reverse) fails.

python-hcl2 (v7/v8) returns a string literal with its quotes and HCL escapes (`"\"a\""`),
any other expression as `"${...}"`, and marks blocks with `__is_block__`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

SPECS = Path(__file__).parent / "data" / "specs"

BUILDER_SPECS = {"virtualbox-iso": "packer-virtualbox-iso.json", "proxmox-iso": "packer-proxmox-iso.json",
                 "qemu": "packer-qemu.json"}
PROVISIONER_SPECS = {"shell": "packer-provisioner-shell.json", "file": "packer-provisioner-file.json"}
POST_PROCESSOR_SPECS = {"manifest": "packer-post-processor-manifest.json"}

# Arguments Packer core decodes on every source block (hcl2template/types.source.go).
SOURCE_CORE_ARGUMENTS: dict = {}


def meta(key: str) -> bool:
    """python-hcl2's own keys (__is_block__, __comments__, ...), not HCL."""
    return key.startswith("__") and key.endswith("__")


def load_spec(name: str) -> dict:
    return json.loads((SPECS / name).read_text())


class Expr(str):
    """An HCL expression that is not a plain literal (its type is only known to Packer)."""


def _unquote(text: str) -> str:
    """Decode an HCL quoted string literal (JSON-compatible escapes) and the template
    escapes `$${` / `%%{`."""
    value = json.loads(text)
    return value.replace("$${", "${").replace("%%{", "%{")


_INTERP = re.compile(r"(?<!\$)\$\{|(?<!%)%\{")


def value(raw):
    """python-hcl2's value -> Python: literals decoded, expressions as Expr."""
    if isinstance(raw, str):
        if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
            inner = raw[1:-1]
            if _INTERP.search(inner):
                return Expr(raw)  # a template with interpolation: a string expression
            return _unquote(raw)
        return Expr(raw)
    if isinstance(raw, list):
        return [value(v) for v in raw]
    if isinstance(raw, dict):
        return {_key(k): value(v) for k, v in raw.items() if not meta(k)}
    return raw


def _key(k: str) -> str:
    return _unquote(k) if k.startswith('"') else k


def load(path: Path) -> dict:
    import hcl2

    with open(path) as f:
        return hcl2.load(f)


def labelled(blocks: list, depth: int):
    """[(labels, body)] for blocks with `depth` labels (source "type" "name" has 2)."""
    out = []
    for entry in blocks or []:
        def walk(node, labels):
            if len(labels) == depth:
                out.append((tuple(labels), node))
                return
            for k, v in node.items():
                if meta(k):
                    continue
                walk(v, labels + [_key(k)])
        walk(entry, [])
    return out


def _type_ok(t: str, v) -> bool:
    if isinstance(v, Expr):
        return True  # only Packer knows; variables are typed in variables.pkr.hcl
    if t == "string":
        return isinstance(v, str)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "bool":
        return isinstance(v, bool)
    if t == "any":
        return True
    m = re.fullmatch(r"(list|set)\((.*)\)", t)
    if m:
        return isinstance(v, list) and all(_type_ok(m.group(2), x) for x in v)
    m = re.fullmatch(r"map\((.*)\)", t)
    if m:
        return isinstance(v, dict) and all(_type_ok(m.group(1), x) for x in v.values())
    raise AssertionError(f"unknown spec type {t}")


def check_body(body: dict, spec: dict, where: str, extra_attributes: dict | None = None) -> list[str]:
    """Errors of one block body against a spec node {"attributes", "blocks"}."""
    errors = []
    attributes = {**(extra_attributes or {}), **spec.get("attributes", {})}
    blocks = spec.get("blocks", {})
    for key, raw in body.items():
        if meta(key):
            continue
        is_block = isinstance(raw, list) and raw and all(isinstance(b, dict) and b.get("__is_block__") for b in raw)
        here = f"{where}.{key}"
        if key in blocks:
            bspec = blocks[key]
            if not is_block:
                errors.append(f"{here}: is a block in the spec, written as an attribute")
                continue
            if bspec.get("deprecated"):
                errors.append(f"{here}: deprecated ({bspec.get('deprecation_note', '')})")
            if bspec.get("nesting") == "single" and len(raw) > 1:
                errors.append(f"{here}: the spec allows one block, found {len(raw)}")
            for i, b in enumerate(raw):
                errors += check_body(b, bspec, f"{here}[{i}]")
        elif key in attributes:
            aspec = attributes[key]
            if is_block:
                errors.append(f"{here}: is an attribute in the spec, written as a block")
                continue
            if aspec.get("deprecated"):
                errors.append(f"{here}: deprecated ({aspec.get('deprecation_note', '')})")
            v = value(raw)
            if not _type_ok(aspec["type"], v):
                errors.append(f"{here}: {v!r} is not of type {aspec['type']}")
        else:
            errors.append(f"{here}: not in the spec")
    return errors


def check_packer_dir(root: Path) -> tuple[dict, list[str]]:
    """Parse every *.pkr.hcl in root; check sources, provisioners, post-processors.
    Returns (merged top-level blocks, errors)."""
    merged: dict[str, list] = {}
    for path in sorted(root.glob("*.pkr.hcl")):
        for k, v in load(path).items():
            merged.setdefault(k, []).extend(v)
    errors = []
    for (btype, name), body in labelled(merged.get("source"), 2):
        if btype not in BUILDER_SPECS:
            errors.append(f"source {btype}.{name}: no spec for this builder")
            continue
        errors += check_body(body, load_spec(BUILDER_SPECS[btype])["spec"], f"source.{btype}.{name}",
                             SOURCE_CORE_ARGUMENTS)
    for build in merged.get("build", []):
        for i, ((ptype,), body) in enumerate(labelled(build.get("provisioner"), 1)):
            if ptype not in PROVISIONER_SPECS:
                errors.append(f"provisioner[{i}] {ptype}: no spec")
                continue
            spec = load_spec(PROVISIONER_SPECS[ptype])
            errors += check_body(body, spec["spec"], f"build.provisioner[{i}].{ptype}", spec["core_block_arguments"])
        for i, ((ptype,), body) in enumerate(labelled(build.get("post-processor"), 1)):
            if ptype not in POST_PROCESSOR_SPECS:
                errors.append(f"post-processor[{i}] {ptype}: no spec")
                continue
            spec = load_spec(POST_PROCESSOR_SPECS[ptype])
            errors += check_body(body, spec["spec"], f"build.post-processor[{i}].{ptype}", spec["core_block_arguments"])
    return merged, errors
