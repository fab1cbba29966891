"""STAND-IN for kubeadm (bakery's tests; not Kubernetes).

Enforces, for the calls the first-boot script makes, what kubeadm does (kubernetes
`cmd/kubeadm`), stricter where simpler:

- ``--config`` may be mixed only with the flags kubeadm allows beside it
  (`apis/kubeadm/validation/validation.go`, ``ValidateMixedArguments``/``isAllowedFlag``:
  ``skip-*`` flags, ignore-preflight-errors, dry-run, kubeconfig, node-name, …); the file must
  exist and hold an InitConfiguration (init) or JoinConfiguration (join);
- the config holds only kubeadm's, the kubelet's and kube-proxy's kinds;
- preflight: init refuses a node that has an API server manifest or admin.conf already
  (``FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml``), join one that has
  kubelet.conf (``FileAvailable--etc-kubernetes-kubelet.conf``): a half-done try must be reset
  first; a control-plane join refuses a non-empty manifests folder unless the config waives
  ``DirAvailable--etc-kubernetes-manifests``. init needs the cluster CA that bakery wrote in the certificates folder (the real one
  would silently make a new CA, and no node could join);
- ``reset --force`` removes what init or join wrote and empties the certificates folder.

Layout under ``$STANDIN_ROOT``: ``pki/`` (certificatesDir), ``admin.conf``, ``kubelet.conf``,
``manifests/``. ``STANDIN_KUBEADM_FAIL=N`` makes the first N init/join calls fail after
preflight, as a timed-out wait for the control plane would. Calls go to ``$STANDIN_DIR/calls``.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("STANDIN_ROOT", "."))
STATE_DIR = Path(os.environ.get("STANDIN_DIR", "."))
KNOWN_KINDS = {(f"kubeadm.k8s.io/{v}", k) for v in ("v1beta3", "v1beta4")
               for k in ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration")} | {
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")}
ALLOWED_WITH_CONFIG = {"config", "ignore-preflight-errors", "dry-run", "kubeconfig", "node-name",
                       "kubeconfig-dir", "upload-certs", "print-join-command", "rootfs", "v", "log-file", "yes"}


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(1)


def bump(name: str) -> int:
    counter = STATE_DIR / f"kubeadm-{name}-count"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def parse(argv: list[str]) -> tuple[str, dict[str, str | bool]]:
    if not argv:
        fail("kubeadm: no command (stand-in)")
    verb, flags = argv[0], {}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        a = rest[i]
        if not a.startswith("--"):
            fail(f"unknown command {a!r} for kubeadm {verb} (stand-in)")
        name, eq, value = a[2:].partition("=")
        if eq:
            flags[name] = value
        elif name in ("config", "ignore-preflight-errors", "node-name", "kubeconfig") and i + 1 < len(rest):
            flags[name] = rest[i + 1]
            i += 1
        else:
            flags[name] = True
        i += 1
    return verb, flags


def read_config(path: str, kind: str) -> list[dict]:
    if not os.path.isfile(path):
        fail(f"unable to read config from {path!r}: no such file")
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    for d in docs:
        if (d.get("apiVersion"), d.get("kind")) not in KNOWN_KINDS:
            fail(f"{path}: unknown kind {d.get('kind')!r} of {d.get('apiVersion')!r} (kubeadm reads only "
                 "its own, the kubelet's and kube-proxy's configuration kinds)")
    if not any(d.get("kind") == kind for d in docs):
        fail(f"no {kind} found in {path} (stand-in)")
    return docs


def main(argv: list[str]) -> None:
    with open(STATE_DIR / "calls", "a") as f:
        f.write("kubeadm " + " ".join(argv) + "\n")
    verb, flags = parse(argv)
    if verb == "version":
        print("kubeadm version: stand-in")
        return
    pki, manifests = ROOT / "pki", ROOT / "manifests"
    if verb == "reset":
        if flags.get("force") is not True:
            fail("kubeadm reset without --force asks for confirmation (stand-in: no terminal)")
        for f in (ROOT / "admin.conf", ROOT / "kubelet.conf", ROOT / "super-admin.conf"):
            f.unlink(missing_ok=True)
        for d in (manifests, pki):
            if d.is_dir():
                for child in d.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        print("[reset] stand-in: removed the node's kubeadm state")
        return
    if verb not in ("init", "join"):
        fail(f"unknown command {verb!r} for kubeadm (stand-in)")
    if "config" in flags:
        mixed = sorted(k for k in flags if k not in ALLOWED_WITH_CONFIG and not k.startswith("skip-"))
        if mixed:
            fail(f"can not mix '--config' with arguments {mixed}")
        read_config(str(flags["config"]), "InitConfiguration" if verb == "init" else "JoinConfiguration")
    else:
        fail("stand-in kubeadm: bakery always passes --config")
    if verb == "init":
        if (manifests / "kube-apiserver.yaml").exists() or (ROOT / "admin.conf").exists():
            fail("[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-manifests-"
                 "kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists")
        if not (pki / "ca.crt").exists() or not (pki / "ca.key").exists():
            fail("stand-in kubeadm: no cluster CA in the certificates folder: kubeadm would make a new one "
                 "and no node with bakery's discovery hash could join")
    elif (ROOT / "kubelet.conf").exists():
        fail("[preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: "
             "/etc/kubernetes/kubelet.conf already exists")
    else:
        (join,) = [d for d in read_config(str(flags["config"]), "JoinConfiguration") if d["kind"] == "JoinConfiguration"]
        ignored = {i.lower() for i in (join.get("nodeRegistration") or {}).get("ignorePreflightErrors") or []}
        # a control-plane join needs an empty manifests folder (preflight DirAvailable), unless waived
        if join.get("controlPlane") is not None and manifests.is_dir() and any(manifests.iterdir()) \
                and "dirAvailable--etc-kubernetes-manifests".lower() not in ignored and "all" not in ignored:
            fail("[preflight] Some fatal errors occurred:\n\t[ERROR DirAvailable--etc-kubernetes-manifests]: "
                 "/etc/kubernetes/manifests is not empty")
    if bump(verb) <= int(os.environ.get("STANDIN_KUBEADM_FAIL", "0")):
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "kube-apiserver.yaml").write_text("# stand-in: a half-done try\n")
        (ROOT / "kubelet.conf").write_text("# stand-in\n")
        fail("[wait-control-plane] stand-in: the control plane did not come up (a failing try)")
    manifests.mkdir(parents=True, exist_ok=True)
    (ROOT / "kubelet.conf").write_text("# stand-in kubelet.conf\n")
    if verb == "init" or flags.get("config") and any(
            d.get("controlPlane") is not None for d in read_config(str(flags["config"]), "JoinConfiguration")):
        (manifests / "kube-apiserver.yaml").write_text("# stand-in\n")
        (ROOT / "admin.conf").write_text("# stand-in admin.conf\n")
    print(f"stand-in kubeadm {verb}: done")


if __name__ == "__main__":
    main(sys.argv[1:])
