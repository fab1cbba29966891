"""STAND-IN rules of kube-apiserver's start (bakery's tests; not the API server): what the static
pod kubeadm writes from ClusterConfiguration.apiServer needs of the node before it can run.

- extraVolumes (kubeadm HostPathMount, cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go): the
  kubelet checks each hostPath's pathType before it starts the pod (File: an existing file;
  Directory: an existing folder; DirectoryOrCreate / FileOrCreate: made when missing).
- A file a flag names must be inside a volume of the pod (kubeadm's own, from
  cmd/kubeadm/app/phases/controlplane/volumes.go: k8s-certs, ca-certs, etc-ca-certificates,
  usr-share-ca-certificates, usr-local-share-ca-certificates; or an extraVolume); the audit log's
  folder must be mounted writable.
- --audit-policy-file: an audit.k8s.io/v1 Policy, decoded strictly (k8s.io/apiserver
  pkg/apis/audit/v1/types.go) and validated as pkg/apis/audit/validation does (a known level
  on every rule, known stages, resources and nonResourceURLs not both, a non-resource URL
  starting with "/" with "*" only at its end).
- --encryption-provider-config: an apiserver.config.k8s.io/v1 EncryptionConfiguration
  (k8s.io/apiserver pkg/apis/apiserver/v1/types.go), validated as
  pkg/apis/apiserver/validation/validation.go does: resources and providers not empty, one
  provider type per entry, keys with unique non-empty names and base64 secrets of the sizes the
  transformers take (secretbox and aescbc 32 bytes, aesgcm 16, 24 or 32).
"""
from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Callable
from pathlib import Path

import yaml

KUBEADM_MOUNTS = {"/etc/kubernetes/pki": True, "/etc/ssl/certs": True, "/etc/ca-certificates": True,
                  "/usr/share/ca-certificates": True, "/usr/local/share/ca-certificates": True}
LEVELS = {"None", "Metadata", "Request", "RequestResponse"}
STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
POLICY_FIELDS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
RULE_FIELDS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
               "omitStages", "omitManagedFields"}
GROUP_RESOURCE_FIELDS = {"group", "resources", "resourceNames"}
PROVIDERS = {"aesgcm", "aescbc", "secretbox", "identity", "kms"}
KEY_SIZES = {"secretbox": {32}, "aescbc": {32}, "aesgcm": {16, 24, 32}}


def args_of(api_server: dict) -> dict[str, str]:
    extra = api_server.get("extraArgs") or []
    if isinstance(extra, dict):  # v1beta3
        return {str(k): str(v) for k, v in extra.items()}
    return {a["name"]: a["value"] for a in extra}


def check_policy(doc) -> list[str]:
    if not isinstance(doc, dict):
        return ["the audit policy is not a YAML mapping"]
    errors = [f"Policy.{k}: unknown field" for k in doc if k not in POLICY_FIELDS]
    if doc.get("apiVersion") != "audit.k8s.io/v1" or doc.get("kind") != "Policy":
        errors.append(f"not an audit.k8s.io/v1 Policy: {doc.get('apiVersion')}/{doc.get('kind')}")
    for s in doc.get("omitStages") or []:
        if s not in STAGES:
            errors.append(f"omitStages: {s!r} is not a stage")
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        errors.append("rules: a policy without rules logs nothing (the API server refuses an empty policy file)")
        return errors
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            errors.append(f"{where}: not a mapping")
            continue
        errors += [f"{where}.{k}: unknown field" for k in r if k not in RULE_FIELDS]
        if r.get("level") not in LEVELS:
            errors.append(f"{where}.level: {r.get('level')!r} is not one of {sorted(LEVELS)}")
        if r.get("resources") and r.get("nonResourceURLs"):
            errors.append(f"{where}: rules can apply to API resources or non-resource URLs, but not both")
        for j, g in enumerate(r.get("resources") or []):
            if not isinstance(g, dict):
                errors.append(f"{where}.resources[{j}]: not a mapping")
                continue
            errors += [f"{where}.resources[{j}].{k}: unknown field" for k in g if k not in GROUP_RESOURCE_FIELDS]
        for u in r.get("nonResourceURLs") or []:
            if not isinstance(u, str) or not u.startswith("/") or "*" in u[:-1]:
                errors.append(f"{where}.nonResourceURLs: {u!r} must start with / and may hold * only at its end")
        for s in r.get("omitStages") or []:
            if s not in STAGES:
                errors.append(f"{where}.omitStages: {s!r} is not a stage")
    return errors


def check_encryption(doc) -> list[str]:
    if not isinstance(doc, dict):
        return ["the encryption configuration is not a YAML mapping"]
    errors = [f"EncryptionConfiguration.{k}: unknown field" for k in doc if k not in {"apiVersion", "kind", "resources"}]
    if doc.get("apiVersion") != "apiserver.config.k8s.io/v1" or doc.get("kind") != "EncryptionConfiguration":
        errors.append(f"not an apiserver.config.k8s.io/v1 EncryptionConfiguration: {doc.get('apiVersion')}/{doc.get('kind')}")
    resources = doc.get("resources")
    if not isinstance(resources, list) or not resources:
        return errors + ["resources: at least one is required"]
    for i, rc in enumerate(resources):
        where = f"resources[{i}]"
        if not isinstance(rc, dict):
            errors.append(f"{where}: not a mapping")
            continue
        errors += [f"{where}.{k}: unknown field" for k in rc if k not in {"resources", "providers"}]
        if not rc.get("resources"):
            errors.append(f"{where}.resources: at least one resource is required")
        providers = rc.get("providers")
        if not isinstance(providers, list) or not providers:
            errors.append(f"{where}.providers: at least one provider is required")
            continue
        for j, p in enumerate(providers):
            pw = f"{where}.providers[{j}]"
            if not isinstance(p, dict) or len(p) != 1 or next(iter(p)) not in PROVIDERS:
                errors.append(f"{pw}: exactly one of {sorted(PROVIDERS)} is required")
                continue
            kind, conf = next(iter(p.items()))
            if kind == "identity":
                if conf not in ({}, None):
                    errors.append(f"{pw}.identity: takes no settings")
                continue
            if kind == "kms":
                continue
            keys = (conf or {}).get("keys") if isinstance(conf, dict) else None
            if not isinstance(keys, list) or not keys:
                errors.append(f"{pw}.{kind}.keys: at least one key is required")
                continue
            names = set()
            for k, key in enumerate(keys):
                kw = f"{pw}.{kind}.keys[{k}]"
                if not isinstance(key, dict) or set(key) - {"name", "secret"}:
                    errors.append(f"{kw}: only name and secret")
                    continue
                if not key.get("name"):
                    errors.append(f"{kw}.name: required")
                elif key["name"] in names:
                    errors.append(f"{kw}.name: duplicate key name {key['name']!r}")
                names.add(key.get("name"))
                try:
                    raw = base64.b64decode(str(key.get("secret", "")), validate=True)
                except (binascii.Error, ValueError):
                    errors.append(f"{kw}.secret: not base64")  # the value is never shown
                    continue
                if len(raw) not in KEY_SIZES[kind]:
                    errors.append(f"{kw}.secret: {len(raw)} bytes; {kind} takes {sorted(KEY_SIZES[kind])}")
    return errors


def check(api_server: dict, path: Callable[[str], Path]) -> list[str]:
    """What keeps this node's kube-apiserver from starting, from the ClusterConfiguration's
    apiServer; `path` maps a node path to where it is in the node's root."""
    errors: list[str] = []
    mounts = dict(KUBEADM_MOUNTS)
    for i, v in enumerate(api_server.get("extraVolumes") or []):
        host, kind = v.get("hostPath", ""), v.get("pathType", "")
        p = path(host)
        if kind == "File" and not p.is_file():
            errors.append(f"extraVolumes[{i}] ({v.get('name')}): hostPath type check failed: {host} is not a file")
        elif kind == "Directory" and not p.is_dir():
            errors.append(f"extraVolumes[{i}] ({v.get('name')}): hostPath type check failed: {host} is not a directory")
        elif kind == "DirectoryOrCreate":
            p.mkdir(parents=True, exist_ok=True)
        if host != v.get("mountPath"):
            errors.append(f"extraVolumes[{i}]: mounted at {v.get('mountPath')}, not at its hostPath {host} "
                          "(the flags name host paths)")
        mounts[v.get("mountPath", "")] = bool(v.get("readOnly", False))

    def visible(file: str, *, writable: bool = False) -> bool:
        for m, ro in mounts.items():
            if file == m or file.startswith(m.rstrip("/") + "/"):
                return not (writable and ro)
        return False

    args = args_of(api_server)

    def flag_file(flag: str, check) -> None:
        """A flag naming a file the API server reads at start: in a volume, there, and valid."""
        file = args.get(flag)
        if not visible(file):
            errors.append(f"--{flag}={file}: not in any volume of the kube-apiserver pod")
        elif not path(file).is_file():
            errors.append(f"--{flag}={file}: no such file")
        else:
            errors.extend(f"--{flag}: {e}" for e in check(yaml.safe_load(path(file).read_text())))

    if args.get("audit-policy-file"):
        flag_file("audit-policy-file", check_policy)
        log = args.get("audit-log-path")
        if log and log != "-" and not visible(posixpath.dirname(log), writable=True):
            errors.append(f"--audit-log-path={log}: its folder is not a writable volume of the kube-apiserver pod")
    if args.get("encryption-provider-config"):
        flag_file("encryption-provider-config", check_encryption)
    return errors
