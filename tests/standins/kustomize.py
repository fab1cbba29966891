"""STAND-IN for the kustomize built into kubectl (`kubectl apply -k DIR`), for the subset the
first boot uses, stricter than kustomize v5 where that is simpler, never more lenient:

- the folder holds exactly one of kustomization.yaml, kustomization.yml, Kustomization
  (kustomize: "Found multiple kustomization files" / "unable to find one of ...");
- apiVersion kustomize.config.k8s.io/v1beta1 (or none) and kind Kustomization; fields other
  than resources and patches are refused (stand-in: kustomize has many more);
- resources: files in or below the folder (kustomize's default load restriction:
  "security; file ... is not in or below ..."); a missing one is an error;
- patches: a `target` (group, version, kind, name, namespace: all must match; kustomize also
  knows label selectors) and an inline `patch`: a JSON 6902 list (add, remove, replace, test,
  RFC 6902 semantics: `replace` and `remove` need the path, `add` needs the parent, `-` appends
  to an array, `test` compares). A patch whose target selects nothing is refused (kustomize
  ignores it: stricter). Strategic-merge patches and `path:` patches are refused (unused).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
FIELDS = {"apiVersion", "kind", "resources", "patches"}
TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}


class KustomizeError(Exception):
    pass


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts: list[str], path: str):
    for p in parts:
        if isinstance(doc, dict) and p in doc:
            doc = doc[p]
        elif isinstance(doc, list) and p.isdigit() and int(p) < len(doc):
            doc = doc[int(p)]
        else:
            raise KustomizeError(f"unable to find {path} in the object (RFC 6902: the path must exist)")
    return doc


def apply_6902(obj: dict, ops: list) -> dict:
    out = copy.deepcopy(obj)
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "test") or "path" not in op:
            raise KustomizeError(f"unsupported or malformed JSON 6902 operation {op!r}")
        parts = _pointer(op["path"])
        parent, last = _walk(out, parts[:-1], op["path"]), parts[-1]
        kind = op["op"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise KustomizeError(f"{kind} {op['path']}: no value")
        if kind == "test":
            if _walk(out, parts, op["path"]) != op["value"]:
                raise KustomizeError(f"testing value {op['path']} failed: it is not {op['value']!r}")
        elif isinstance(parent, list):
            if last == "-" and kind == "add":
                parent.append(copy.deepcopy(op["value"]))
                continue
            if not last.isdigit() or int(last) > len(parent) or (kind != "add" and int(last) == len(parent)):
                raise KustomizeError(f"{kind} {op['path']}: index out of range")
            i = int(last)
            if kind == "add":
                parent.insert(i, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[i] = copy.deepcopy(op["value"])
            else:
                del parent[i]
        elif isinstance(parent, dict):
            if kind in ("replace", "remove") and last not in parent:
                raise KustomizeError(f"{kind} {op['path']}: the path does not exist")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])
        else:
            raise KustomizeError(f"{kind} {op['path']}: the parent is not an object or array")
    return out


def _matches(target: dict, obj: dict) -> bool:
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    meta = obj.get("metadata") or {}
    want = {"group": group, "version": version, "kind": obj.get("kind"), "name": meta.get("name"),
            "namespace": meta.get("namespace")}
    return all(want[k] == v for k, v in target.items())


def build(folder: Path) -> list[dict]:
    """`kustomize build folder` for the subset above: the objects, patched."""
    found = [folder / n for n in NAMES if (folder / n).is_file()]
    if len(found) != 1:
        raise KustomizeError(f"unable to find one of {', '.join(NAMES)} in directory '{folder}'" if not found
                             else f"Found multiple kustomization files under: {folder}")
    k = yaml.safe_load(found[0].read_text())
    if not isinstance(k, dict):
        raise KustomizeError(f"{found[0].name}: not a mapping")
    extra = set(k) - FIELDS
    if extra:
        raise KustomizeError(f"{found[0].name}: stand-in kustomize does not support {sorted(extra)}")
    if k.get("apiVersion", "kustomize.config.k8s.io/v1beta1") != "kustomize.config.k8s.io/v1beta1" or \
            k.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{found[0].name}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    objects: list[dict] = []
    root = folder.resolve()
    for res in k.get("resources") or []:
        path = (folder / str(res)).resolve()
        if root not in path.parents:
            raise KustomizeError(f"security; file '{path}' is not in or below '{root}'")
        if not path.is_file():
            raise KustomizeError(f"accumulating resources: '{path}' must resolve to a file")
        objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for i, patch in enumerate(k.get("patches") or []):
        if set(patch) != {"target", "patch"}:
            raise KustomizeError(f"patches[{i}]: stand-in kustomize supports target + inline patch only")
        target = patch["target"]
        if not isinstance(target, dict) or not target or set(target) - TARGET_FIELDS:
            raise KustomizeError(f"patches[{i}].target: only {sorted(TARGET_FIELDS)}")
        ops = yaml.safe_load(patch["patch"])
        if not isinstance(ops, list):
            raise KustomizeError(f"patches[{i}]: stand-in kustomize supports JSON 6902 patches only")
        hits = [j for j, o in enumerate(objects) if _matches(target, o)]
        if not hits:
            raise KustomizeError(f"patches[{i}]: no resource matches the target {target} (stand-in: refused)")
        for j in hits:
            objects[j] = apply_6902(objects[j], ops)
    return objects


if __name__ == "__main__":  # python kustomize.py DIR: print the build, as `kubectl kustomize DIR` does
    import sys

    print(yaml.safe_dump_all(build(Path(sys.argv[1])), sort_keys=False), end="")
