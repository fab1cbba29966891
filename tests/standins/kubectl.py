"""STAND-IN for kubectl and the API server behind it (bakery's tests; not Kubernetes).

The first-boot script's API steps run against this. It keeps the cluster's objects in a JSON
state file and enforces what the real kubectl and API server do with the calls the script
makes, stricter where that is simpler, never more lenient:

- a call to the API needs a kubeconfig that exists (``--kubeconfig`` or ``$KUBECONFIG``) or an
  explicit ``--server``; while the API server is "down" (``STANDIN_API_DOWN_CALLS`` calls
  refused) it fails the way kubectl does ("The connection to the server ... was refused");
- ``create -f`` fails with AlreadyExists for every object that exists (and creates the rest,
  exit 1), as kubectl does;
- ``apply -f`` without ``--server-side`` refuses a CustomResourceDefinition: its
  last-applied annotation would exceed the API server's 262144-byte limit for Calico's CRDs
  (stricter: it refuses every CRD);
- ``apply --server-side`` creates or updates; an object ``create`` made is owned by another
  field manager, so re-applying it without ``--force-conflicts`` is a conflict;
- an object in a namespace needs that namespace to exist; an object of a kind the API server
  does not serve (not built in, no established CRD ``<plural>.<group>``) fails with "no
  matches for kind";
- ``wait --for=condition=established crd/NAME`` needs the CRD; ``get --raw=/readyz`` answers
  "ok" while the API server is up.

Every object sent to the API server is logged in the state (``sent``), so a test can check
that each object of a release is sent exactly once. Calls are appended to ``$STANDIN_DIR/calls``
as ``kubectl ARGS``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

STATE_DIR = Path(os.environ.get("STANDIN_DIR", "."))
STATE = STATE_DIR / "api-state.json"

# Kinds the API server serves without a CRD: (group, kind) -> namespaced
BUILTIN = {
    ("", "Namespace"): False, ("", "ServiceAccount"): True, ("", "ConfigMap"): True,
    ("", "Secret"): True, ("", "Service"): True, ("", "Pod"): True,
    ("rbac.authorization.k8s.io", "ClusterRole"): False,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): False,
    ("rbac.authorization.k8s.io", "Role"): True, ("rbac.authorization.k8s.io", "RoleBinding"): True,
    ("apps", "Deployment"): True, ("apps", "DaemonSet"): True,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): False,
    ("policy", "PodDisruptionBudget"): True,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): False,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): False,
}
ANNOTATION_LIMIT = 262144


def fail(msg: str, rc: int = 1) -> None:
    print(msg, file=sys.stderr)
    sys.exit(rc)


def load_state() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"objects": {}, "sent": [], "api_calls": 0}


def save_state(state: dict) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(STATE)


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return "|".join([group_of(obj["apiVersion"]), obj["kind"], meta.get("namespace") or "", meta["name"]])


def served(state: dict, obj: dict) -> bool | None:
    """Namespaced or not, or None when the API server does not serve the kind."""
    group, kind = group_of(obj["apiVersion"]), obj["kind"]
    if (group, kind) in BUILTIN:
        return BUILTIN[(group, kind)]
    crd_name = f"{kind.lower()}s.{group}"
    crd = state["objects"].get(f"apiextensions.k8s.io|CustomResourceDefinition||{crd_name}")
    if crd is None:
        return None
    return (crd["object"].get("spec") or {}).get("scope", "Namespaced") == "Namespaced"


def documents(path: str) -> list[dict]:
    if not os.path.isfile(path):
        fail(f'error: the path "{path}" does not exist')
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or \
                not (d.get("metadata") or {}).get("name"):
            fail(f'error: error validating "{path}": apiVersion, kind and metadata.name are required')
    return docs


def check_object(state: dict, obj: dict, path: str) -> str | None:
    namespaced = served(state, obj)
    if namespaced is None:
        return (f'error: resource mapping not found for name: "{obj["metadata"]["name"]}" namespace: "" '
                f'from "{path}": no matches for kind "{obj["kind"]}" in version "{obj["apiVersion"]}"\n'
                "ensure CRDs are installed first")
    ns = obj["metadata"].get("namespace")
    if namespaced and not ns:
        return f'error: {obj["kind"]} "{obj["metadata"]["name"]}" has no namespace (stand-in: set one)'
    if namespaced and f"|Namespace||{ns}" not in state["objects"]:
        return f'Error from server (NotFound): error when creating "{path}": namespaces "{ns}" not found'
    return None


def main(argv: list[str]) -> None:
    with open(STATE_DIR / "calls", "a") as f:
        f.write("kubectl " + " ".join(argv) + "\n")
    flags: dict[str, str] = {}
    switches: set[str] = set()
    words: list[str] = []
    takes_value = {"--kubeconfig", "--server", "--certificate-authority", "--request-timeout", "-f",
                   "--filename", "--for", "--timeout", "--raw"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" in a:
            k, _, v = a.partition("=")
            flags[k] = v
        elif a in takes_value:
            if i + 1 >= len(argv):
                fail(f"error: flag needs an argument: {a}")
            flags[a] = argv[i + 1]
            i += 1
        elif a.startswith("-"):
            switches.add(a)
        else:
            words.append(a)
        i += 1
    if not words:
        fail("error: no command (stand-in kubectl)")
    verb = words[0]
    if verb == "version":
        print("Client Version: stand-in")
        return

    # -- the API server connection
    state = load_state()
    ca = flags.get("--certificate-authority")
    if ca is not None and not os.path.isfile(ca):
        fail(f"error: unable to read certificate-authority {ca} for cluster due to open {ca}: "
             "no such file or directory")
    if "--server" not in flags:
        cfg = flags.get("--kubeconfig") or os.environ.get("KUBECONFIG", "")
        if not cfg or not os.path.isfile(cfg):
            fail("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    state["api_calls"] += 1
    if state["api_calls"] <= int(os.environ.get("STANDIN_API_DOWN_CALLS", "0")):
        save_state(state)
        fail("The connection to the server 192.0.2.1:6443 was refused - did you specify the right host or port?")

    if verb == "get" and flags.get("--raw") == "/readyz":
        print("ok")
    elif verb == "wait":
        if flags.get("--for") != "condition=established" or len(words) != 2 or not words[1].startswith("crd/"):
            fail("error: stand-in kubectl waits only for --for=condition=established crd/NAME")
        name = words[1].removeprefix("crd/")
        if f"apiextensions.k8s.io|CustomResourceDefinition||{name}" not in state["objects"]:
            fail(f'Error from server (NotFound): customresourcedefinitions.apiextensions.k8s.io "{name}" not found')
        print(f"customresourcedefinition.apiextensions.k8s.io/{name} condition met")
    elif verb in ("create", "apply"):
        path = flags.get("-f") or flags.get("--filename")
        if not path or len(words) != 1:
            fail(f"error: stand-in kubectl {verb} takes exactly -f FILE")
        server_side = "--server-side" in switches or flags.get("--server-side") == "true"
        errors = []
        for obj in documents(path):
            problem = check_object(state, obj, path)
            if problem:
                errors.append(problem)
                continue
            k = key(obj)
            exists = k in state["objects"]
            if verb == "create":
                if exists:
                    errors.append(f'Error from server (AlreadyExists): error when creating "{path}": '
                                  f'{obj["kind"]} "{obj["metadata"]["name"]}" already exists')
                    continue
                manager = "kubectl-create"
            elif not server_side:
                if obj["kind"] == "CustomResourceDefinition":
                    errors.append(f'The CustomResourceDefinition "{obj["metadata"]["name"]}" is invalid: '
                                  f"metadata.annotations: Too long: must have at most {ANNOTATION_LIMIT} bytes")
                    continue
                manager = "kubectl-client-side-apply"
            else:
                if exists and state["objects"][k]["manager"] != "kubectl" and "--force-conflicts" not in switches:
                    errors.append(f"error: Apply failed with 1 conflict: conflict with "
                                  f'"{state["objects"][k]["manager"]}" (stand-in: --force-conflicts needed)')
                    continue
                manager = "kubectl"
            state["objects"][k] = {"object": obj, "manager": manager}
            state["sent"].append(k)
            action = "created" if not exists else ("serverside-applied" if server_side else "configured")
            print(f'{obj["kind"].lower()}/{obj["metadata"]["name"]} {action}')
        save_state(state)
        if errors:
            fail("\n".join(errors))
    else:
        fail(f'error: unknown command "{verb}" for "kubectl" (stand-in)')
    save_state(state)


if __name__ == "__main__":
    main(sys.argv[1:])
