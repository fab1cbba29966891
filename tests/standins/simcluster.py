"""The simulated cluster the stand-ins share (bakery's tests; not Kubernetes).

One JSON state file holds what the real cluster would hold across nodes: the CAs kubeadm init
adopted, the bootstrap tokens it registered, the RBAC binding of ``kubeadm:cluster-admins``,
the etcd members, which node runs an API server, the static pods each node's kubelet runs (for
kube-vip and its VIP), the API objects (kubectl.py) and every contract violation a stand-in
found. Every stand-in runs inside a node's throwaway root (tests/lab/), where the lab's own
files are under ``/.rehearsal`` (the lab points STATE and LOCK at its own folder to read it):

- ``/.rehearsal/state/cluster.json`` (shared by every node, guarded by ``state/lock``);
- ``/.rehearsal/node.json``: this node's name, its addresses (from its network-config, as the
  lab configured them in the node's network namespace), the installed Kubernetes version and
  the images in its container runtime (the bake's pre-pull list).

A *violation* is a refusal the real program would make (or a stricter one): the stand-in
records it (node, step, reason), prints it as the real program would, exits non-zero, and the
lab stops the rehearsal there. The sources of each rule are named where the rule is.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

LAB = Path("/.rehearsal")
STATE = LAB / "state" / "cluster.json"
LOCK = LAB / "state" / "lock"
NODE = LAB / "node.json"
ROOT = Path("/")  # the node's root, as the stand-in sees it (a chroot)

# kubeadm's paths (cmd/kubeadm/app/constants/constants.go)
KUBERNETES_DIR = "/etc/kubernetes"
PKI_DIR = "/etc/kubernetes/pki"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBELET_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins"  # constants.ClusterAdminsGroupAndClusterRoleBinding (1.29+)
MASTERS_GROUP = "system:masters"
# Paths the anonymous user may GET (the system:public-info-viewer ClusterRole, bootstrap policy)
PUBLIC_INFO = {"/healthz", "/livez", "/readyz", "/version", "/version/"}


def path(p: str) -> Path:
    """An absolute path on the node, inside the node's root."""
    return ROOT / p.lstrip("/")


def now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


# -- the shared state -------------------------------------------------------------------

def empty_state() -> dict:
    return {"initialized": False, "cluster": {}, "ca": {}, "tokens": {}, "rbac": [], "nodes": {},
            "etcd": [], "objects": {}, "sent": [], "pending": {}, "violations": [], "step": {}}


_held: dict | None = None  # the state while a block holds the lock


def _save(st: dict) -> None:
    tmp = STATE.with_name(STATE.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(st, indent=1, sort_keys=True))
    tmp.replace(STATE)


@contextlib.contextmanager
def state(write: bool = True):
    """The shared state, locked for the block; saved at its end when write is true, and
    whenever the block ends in a violation (which the block's own refusal recorded)."""
    global _held
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        st = json.loads(STATE.read_text()) if STATE.exists() else empty_state()
        _held = st
        try:
            yield st
        except SystemExit:
            _save(st)
            raise
        else:
            if write:
                _save(st)
        finally:
            _held = None


def node() -> dict:
    return json.loads(NODE.read_text())


def machine(node: dict) -> str:
    """The machine this node runs on: a re-created VM of the same name is another machine
    (the lab gives each boot of a rehearsal's node its own); its reboots are the same one."""
    return node.get("machine") or node["name"]


def node_addresses() -> set[str]:
    return set(node()["addresses"])


def images_here() -> set[str]:
    return set(node()["images"])


class Violation(Exception):
    """A refusal of the real program, recorded as the rehearsal's failure."""


def violation(step: str, reason: str, *, printed: str | None = None, rc: int = 1) -> None:
    """Record the refusal, print it as the real program would, and exit non-zero."""
    name = node()["name"] if NODE.exists() else "?"
    record = {"node": name, "step": step, "reason": reason}
    if _held is not None:
        _held["violations"].append(record)
    else:
        with state() as st:
            st["violations"].append(record)
    print(printed or reason, file=sys.stderr)
    sys.exit(rc)


# -- PKI --------------------------------------------------------------------------------

def load_cert(pem: bytes | str):
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def load_key(pem: bytes | str):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)


def public_der(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def is_ca(cert) -> bool:
    from cryptography import x509
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def ca_hash(cert) -> str:
    """kubeadm's discovery hash: sha256 of the CA certificate's DER SubjectPublicKeyInfo
    (cmd/kubeadm/app/util/pubkeypin/pubkeypin.go)."""
    return "sha256:" + hashlib.sha256(public_der(cert.public_key())).hexdigest()


def check_pair(crt_path: str, key_path: str, *, ca: bool) -> str | None:
    """None when the files exist, parse, the certificate matches the key (and is a CA)."""
    for p in (crt_path, key_path):
        if not path(p).is_file():
            return f"{p} is missing"
    try:
        cert = load_cert(path(crt_path).read_bytes())
    except ValueError as e:
        return f"{crt_path} is not a PEM certificate ({e})"
    try:
        key = load_key(path(key_path).read_bytes())
    except (ValueError, TypeError) as e:
        return f"{key_path} is not a PEM private key ({e})"
    if public_der(cert.public_key()) != public_der(key.public_key()):
        return f"{crt_path} does not match the key {key_path}"
    if ca and not is_ca(cert):
        return f"{crt_path} is not a CA certificate (basicConstraints CA:TRUE)"
    return None


def check_key_pair(pub_path: str, key_path: str) -> str | None:
    """The service-account key pair: sa.key and sa.pub (a PEM public key) match."""
    from cryptography.hazmat.primitives import serialization
    for p in (pub_path, key_path):
        if not path(p).is_file():
            return f"{p} is missing"
    try:
        pub = serialization.load_pem_public_key(path(pub_path).read_bytes())
        key = load_key(path(key_path).read_bytes())
    except (ValueError, TypeError) as e:
        return f"the service-account key pair does not parse ({e})"
    if public_der(pub) != public_der(key.public_key()):
        return f"{pub_path} does not match {key_path}"
    return None


def issue_client(ca_crt_pem: bytes, ca_key_pem: bytes, cn: str, groups: list[str]) -> tuple[bytes, bytes]:
    """A client certificate signed by the CA, as kubeadm's kubeconfig phase makes one
    (a fresh ECDSA key here: only the identity and the signer matter to the stand-ins)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert, ca_key = load_cert(ca_crt_pem), load_key(ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def signed_by(cert, ca_cert) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    return True


# -- kubeconfig files -------------------------------------------------------------------

def write_kubeconfig(dest: str, server: str, ca_pem: bytes, user: str, crt: bytes, key: bytes) -> None:
    import base64

    import yaml
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": f"{user}@cluster",
           "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
           "users": [{"name": user, "user": {"client-certificate-data": b64(crt), "client-key-data": b64(key)}}],
           "contexts": [{"name": f"{user}@cluster", "context": {"cluster": "cluster", "user": user}}]}
    p = path(dest)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(cfg))
    p.chmod(0o600)


def read_kubeconfig(file: Path) -> dict[str, Any]:
    """server, ca (PEM bytes or None), cert, key (PEM bytes or None) of the current context,
    as client-go's loader resolves them (inline data or a file path). Raises ValueError."""
    import base64

    import yaml
    try:
        cfg = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"error loading config file \"{file}\": {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"error loading config file \"{file}\": not a kubeconfig")
    ctx_name = cfg.get("current-context")
    named = lambda key, name: next((e.get(key[:-1]) or {} for e in cfg.get(key) or []  # noqa: E731
                                    if isinstance(e, dict) and e.get("name") == name), None)
    ctx = named("contexts", ctx_name)
    if not ctx:
        raise ValueError(f"error: current-context {ctx_name!r} is not in {file}")
    cluster, user = named("clusters", ctx.get("cluster")), named("users", ctx.get("user"))
    if not cluster or not cluster.get("server"):
        raise ValueError(f"error: no server for context {ctx_name!r} in {file}")
    user = user or {}

    def data(d: dict, key: str) -> bytes | None:
        if d.get(f"{key}-data"):
            return base64.b64decode(d[f"{key}-data"])
        if d.get(key):
            p = path(d[key]) if os.path.isabs(d[key]) else file.parent / d[key]
            if not p.is_file():
                raise ValueError(f"error: unable to read {key} {d[key]}: no such file or directory")
            return p.read_bytes()
        return None
    return {"server": cluster["server"], "ca": data(cluster, "certificate-authority"),
            "cert": data(user, "client-certificate"), "key": data(user, "client-key"),
            "token": user.get("token")}


# -- who answers at an address ----------------------------------------------------------

def split_server(server: str) -> tuple[str, int]:
    rest = server.removeprefix("https://")
    if rest == server:
        raise ValueError(f"{server}: the API server speaks https only")
    host, _, port = rest.partition("/")[0].rpartition(":")
    return host.strip("[]"), int(port)


def identity(st: dict, cert_pem: bytes | None, key_pem: bytes | None) -> tuple[str, list[str]] | str:
    """(user, groups) of a client certificate the cluster's CA signed, or why it is refused."""
    if cert_pem is None:
        return ("system:anonymous", ["system:unauthenticated"])
    try:
        cert = load_cert(cert_pem)
        key = load_key(key_pem) if key_pem else None
    except (ValueError, TypeError) as e:
        return f"the client certificate does not load: {e}"
    if key is None or public_der(key.public_key()) != public_der(cert.public_key()):
        return "tls: private key does not match public key"
    if not st["ca"].get("ca") or not signed_by(cert, load_cert(st["ca"]["ca"])):
        return "Unauthorized (the client certificate is not signed by the cluster's CA)"
    from cryptography.x509.oid import NameOID
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    groups = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(cn[0]) if cn else "", groups)


def authorized(st: dict, groups: list[str]) -> bool:
    """Full access: system:masters always (the authorizer short-cuts it), kubeadm:cluster-admins
    once init created its ClusterRoleBinding to cluster-admin."""
    return MASTERS_GROUP in groups or (CLUSTER_ADMINS_GROUP in groups and CLUSTER_ADMINS_GROUP in st["rbac"])


def api_server_at(st: dict, address: str) -> str | None:
    """The node whose API server serves on this address, if any (its own address; a VIP
    while a kube-vip pod holds it)."""
    for name, n in st["nodes"].items():
        if n.get("apiServer") and n.get("address") == address:
            return name
    return vip_holder(st, address)


def api_server_ready(st: dict, address: str) -> bool:
    """A control-plane node's own API server answers /readyz: it runs and its etcd member
    has joined (the API server talks to its local etcd member only)."""
    return any(n.get("apiServer") and n.get("address") == address and name in st["etcd"]
               for name, n in st["nodes"].items())


def vip_holder(st: dict, address: str) -> str | None:
    """The control-plane node whose kube-vip static pod holds this VIP now: kube-vip (control
    plane mode, leader election on a Lease) holds the address only while its kubeconfig lets
    it take the lease, i.e. while the identity in that file is authorized (kube-vip#684: with
    kubeadm 1.29+ admin.conf is authorized only after init, so on the init node kube-vip
    must use super-admin.conf during init). Its image must be in the node's runtime, control
    plane mode on (``cp_enable``), and ``vip_interface`` a NIC of the node (kube-vip adds the
    address to that link and fails when it does not exist: pkg/vip, netlink.LinkByName)."""
    for name, n in st["nodes"].items():
        pod = (n.get("staticPods") or {}).get("kube-vip")
        if not pod or not n.get("apiServer") or pod.get("address") != address:
            continue
        if not pod.get("imagePresent") or pod.get("groups") is None or not pod.get("controlPlane") \
                or not pod.get("interfaceExists"):
            continue
        if authorized(st, pod["groups"]):
            return name
    return None


def reach(st: dict, server: str) -> tuple[str | None, str]:
    """(node serving, reason when none) for an https://host:port server."""
    try:
        host, port = split_server(server)
    except ValueError as e:
        return None, str(e)
    endpoint = st["cluster"].get("bindPort", 6443)
    who = api_server_at(st, host) if port == endpoint else None
    if who is None:
        return None, (f"dial tcp {host}:{port}: connect: connection refused (no API server"
                      f"{' and no kube-vip holding that address' if host not in node_ips(st) else ''} there)")
    return who, ""


def node_ips(st: dict) -> set[str]:
    return {n.get("address") for n in st["nodes"].values()}


def sync_static_pods(st: dict, name: str) -> None:
    """What this node's kubelet runs from its manifests folder, noted in the state (the
    kubelet watches the folder; the stand-ins sync it whenever they run on the node)."""
    import yaml
    n = st["nodes"].get(name)
    if not n or not n.get("kubelet"):
        return
    pods = {}
    folder = path(MANIFESTS_DIR)
    for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            pod = yaml.safe_load(f.read_text())
        except yaml.YAMLError:
            continue
        if not isinstance(pod, dict) or pod.get("kind") != "Pod":
            continue
        pname = (pod.get("metadata") or {}).get("name", f.stem)
        entry: dict[str, Any] = {"file": f.name}
        containers = (pod.get("spec") or {}).get("containers") or []
        entry["imagePresent"] = all(c.get("image") in images_here() for c in containers)
        if pname == "kube-vip":
            env = {e.get("name"): e.get("value") for c in containers for e in c.get("env") or []}
            entry["address"] = env.get("address") or env.get("vip_address")
            entry["controlPlane"] = env.get("cp_enable") == "true"
            entry["interfaceExists"] = env.get("vip_interface") in node().get("interfaces", {})
            mounts = {m["name"]: m["mountPath"] for c in containers for m in c.get("volumeMounts") or []}
            host_paths = {v["name"]: (v.get("hostPath") or {}).get("path")
                          for v in (pod.get("spec") or {}).get("volumes") or []}
            kubeconfig = next((host_paths.get(v) for v, m in mounts.items() if m == ADMIN_CONF), None)
            entry["kubeconfig"] = kubeconfig
            entry["groups"] = None
            if kubeconfig and path(kubeconfig).is_file() and path(kubeconfig).stat().st_size:
                try:
                    kc = read_kubeconfig(path(kubeconfig))
                    who = identity(st, kc["cert"], kc["key"])
                    entry["groups"] = who[1] if isinstance(who, tuple) else None
                except ValueError:
                    entry["groups"] = None
        pods[pname] = entry
    n["staticPods"] = pods

