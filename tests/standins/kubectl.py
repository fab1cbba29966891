"""STAND-IN for kubectl and the API server behind it (bakery's tests; not Kubernetes), run
inside a node's throwaway root by the cluster rehearsal (tests/rehearse.py) against the shared
simulated cluster (simcluster.py). It enforces what the real kubectl and API server do with the
calls the first boot makes, stricter where that is simpler, never more lenient:

- the connection: a kubeconfig that exists and loads (``--kubeconfig``, ``$KUBECONFIG``), or
  ``--server`` with ``--certificate-authority`` (anonymous); the server answers only where an
  API server runs (a control-plane node's address, or a VIP while kube-vip holds it:
  simcluster.reach), else kubectl's "connection ... refused"; the CA it trusts must be the
  cluster's (x509: certificate signed by unknown authority); a client certificate must match
  its key and be signed by the cluster CA (Unauthorized);
- authorization: system:masters always; ``kubeadm:cluster-admins`` once kubeadm init created its
  binding; anonymous only the public-info paths (/readyz, /livez, /healthz, /version)
  (Forbidden otherwise); ``get --raw=/readyz`` on one control-plane node's address answers
  only once its etcd member joined;
- ``create -f`` fails with AlreadyExists for every object that exists (and creates the rest,
  exit 1), as kubectl does;
- ``apply -f`` without ``--server-side`` refuses a CustomResourceDefinition: its
  last-applied annotation would exceed the API server's 262144-byte limit for Calico's CRDs
  (stricter: it refuses every CRD);
- ``apply --server-side`` creates or updates; an object ``create`` made is owned by another
  field manager, so re-applying it without ``--force-conflicts`` is a conflict;
- an object in a namespace needs that namespace to exist; an object of a kind the API server
  does not serve (not built in, no CRD ``<plural>.<group>``) fails with "no matches for kind";
  a custom resource of operator.tigera.io/Installation is checked against the vendored CRD
  schema (unknown fields are pruned by the real API server: stricter, refused here);
- ``wait --for=condition=established crd/NAME`` needs the CRD;
- ``-k DIR`` builds the objects with the kustomize stand-in (kustomize.py) and applies them as
  ``-f`` would.

Every object sent to the API server is logged in the state (``sent``), so a test can check
that each object of a release is sent exactly once. A refusal is a violation of the rehearsal
(simcluster.violation), except while the API server is down on purpose (node.json
``faults.apiDownCalls``) and for the refused connections kubectl's callers retry.
"""
from __future__ import annotations

import os
import sys

import contracts
import kustomize
import simcluster as sim
import yaml

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


def fail(msg: str, *, transient: bool = False) -> None:
    """kubectl's refusal: a violation of the rehearsal, unless it is one a later try cures."""
    if transient:
        print(msg, file=sys.stderr)
        sys.exit(1)
    sim.violation("kubectl", msg.removeprefix("error: "), printed=msg)


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
    if not sim.path(path).is_file():
        fail(f'error: the path "{path}" does not exist')
    with open(sim.path(path)) as f:
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
    if (obj["apiVersion"], obj["kind"]) == ("operator.tigera.io/v1", "Installation"):
        errors = contracts.validate_installation(obj)
        if errors:
            return f'The Installation "{obj["metadata"]["name"]}" is invalid: ' + "; ".join(errors[:3])
    return None


def connect(flags: dict[str, str], path: str) -> tuple[dict, list[str] | None]:
    """Checks the connection (server, trust, client identity); returns the state and the groups
    of the caller (None: anonymous). Fails as kubectl does."""
    if "--server" in flags:
        ca_file = flags.get("--certificate-authority")
        if ca_file is not None and not sim.path(ca_file).is_file():
            fail(f"error: unable to read certificate-authority {ca_file} for cluster due to open {ca_file}: "
                 "no such file or directory")
        kc = {"server": flags["--server"], "ca": sim.path(ca_file).read_bytes() if ca_file else None,
              "cert": None, "key": None, "token": None}
    else:
        cfg = flags.get("--kubeconfig") or os.environ.get("KUBECONFIG", "")
        if not cfg or not sim.path(cfg).is_file():
            fail("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
        try:
            kc = sim.read_kubeconfig(sim.path(cfg))
        except ValueError as e:
            fail(str(e))
    node = sim.node()
    with sim.state() as st:
        st["apiCalls"] = st.get("apiCalls", {})
        st["apiCalls"][node["name"]] = calls = st["apiCalls"].get(node["name"], 0) + 1
        for name, n in st["nodes"].items():
            if n.get("host") == sim.machine(node):
                sim.sync_static_pods(st, name)
    if calls <= int((node.get("faults") or {}).get("apiDownCalls", 0)):
        fail(f"The connection to the server {kc['server'].removeprefix('https://')} was refused - "
             "did you specify the right host or port?", transient=True)
    with sim.state(write=False) as st:
        who, why = sim.reach(st, kc["server"])
        if who is None:
            fail(f"The connection to the server {kc['server'].removeprefix('https://')} was refused - "
                 f"did you specify the right host or port? ({why})")
        if kc["ca"] is None or not st["ca"].get("ca") or \
                sim.public_der(sim.load_cert(kc["ca"]).public_key()) != sim.public_der(sim.load_cert(st["ca"]["ca"]).public_key()):
            fail(f"Unable to connect to the server: tls: failed to verify certificate: x509: certificate signed by "
                 f"unknown authority (the kubeconfig or --certificate-authority does not hold the cluster's CA; {path})")
        if kc.get("token"):
            fail("error: You must be logged in to the server (Unauthorized) (stand-in: token users are not known)")
        ident = sim.identity(st, kc["cert"], kc["key"])
        if isinstance(ident, str):
            fail(f"error: You must be logged in to the server ({ident})")
        user, groups = ident
        if kc["cert"] is None:
            return st, None
        if not sim.authorized(st, groups):
            fail(f'Error from server (Forbidden): User "{user}" (groups {groups}) cannot do this: '
                 f"no binding for its groups{' yet (kubeadm init creates the kubeadm:cluster-admins binding at its end)' if sim.CLUSTER_ADMINS_GROUP in groups else ''}")
        return st, groups


def main(argv: list[str]) -> None:
    with open(sim.LAB / "calls", "a") as f:
        f.write("kubectl " + " ".join(argv) + "\n")
    flags: dict[str, str] = {}
    switches: set[str] = set()
    words: list[str] = []
    takes_value = {"--kubeconfig", "--server", "--certificate-authority", "--request-timeout", "-f", "-k",
                   "--kustomize",
                   "--filename", "--for", "--timeout", "--raw", "-o", "--output"}
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
    if verb == "version" and "--client" in switches:
        v = "v" + sim.node()["kubernetesVersion"].lstrip("v")
        print(f'{{"clientVersion": {{"gitVersion": "{v}"}}}}' if flags.get("-o") == "json" else f"Client Version: {v}")
        return
    what = flags.get("--raw") or " ".join(words)
    st, groups = connect(flags, what)
    if groups is None and not (verb == "get" and flags.get("--raw") in sim.PUBLIC_INFO):
        fail(f'Error from server (Forbidden): User "system:anonymous" cannot {what}')
    if verb == "get" and flags.get("--raw") in ("/readyz", "/livez", "/healthz"):
        host, _ = sim.split_server(flags.get("--server") or sim.read_kubeconfig(
            sim.path(flags.get("--kubeconfig") or os.environ["KUBECONFIG"]))["server"])
        holder = sim.api_server_at(st, host)
        if holder is None or holder not in st["etcd"]:
            fail(f"Error from server (InternalError): the server {host} is not ready: its etcd member has not joined")
        print("ok")
        return
    if verb == "get" and words[1:] == ["nodes"]:
        for name, n in sorted(st["nodes"].items()):
            if n.get("kubelet"):
                print(f"{name} {n.get('internalIP')} {n.get('kubeletVersion')}")
        return
    with sim.state() as st:
        api(st, verb, words, flags, switches)


def api(state: dict, verb: str, words: list[str], flags: dict[str, str], switches: set[str]) -> None:
    if verb == "wait":
        if flags.get("--for") != "condition=established" or len(words) != 2 or not words[1].startswith("crd/"):
            fail("error: stand-in kubectl waits only for --for=condition=established crd/NAME")
        name = words[1].removeprefix("crd/")
        if f"apiextensions.k8s.io|CustomResourceDefinition||{name}" not in state["objects"]:
            fail(f'Error from server (NotFound): customresourcedefinitions.apiextensions.k8s.io "{name}" not found')
        print(f"customresourcedefinition.apiextensions.k8s.io/{name} condition met")
    elif verb in ("create", "apply"):
        path = flags.get("-f") or flags.get("--filename")
        folder = flags.get("-k") or flags.get("--kustomize")
        if bool(path) == bool(folder) or len(words) != 1:
            fail(f"error: stand-in kubectl {verb} takes exactly one of -f FILE, -k DIR")
        if folder:
            if not sim.path(folder).is_dir():
                fail(f"error: must build at directory: not a valid directory: '{folder}'")
            try:
                docs = kustomize.build(sim.path(folder))
            except kustomize.KustomizeError as e:
                fail(f"error: {e}")
            path = folder
        else:
            docs = documents(path)
        server_side = "--server-side" in switches or flags.get("--server-side") == "true"
        errors = []
        for obj in docs:
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
        if errors:
            sim.violation("kubectl", errors[0].removeprefix("error: "), printed="\n".join(errors))
    else:
        fail(f'error: unknown command "{verb}" for "kubectl" (stand-in)')


if __name__ == "__main__":
    main(sys.argv[1:])
