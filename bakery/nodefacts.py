"""What a kubeadm node needs of its kernel, and the ports its components serve: one place for
the bake (modules-load.d, sysctl.d), the node check's expectations and the validation of the
endpoint's port. Sources: kubeadm's preflight (kubernetes `cmd/kubeadm/app/preflight/checks.go`:
PortOpenCheck for the API server's bind port, 10259, 10257, 10250 and, with a local etcd,
2379-2380; FileContentCheck for ip_forward) and the container runtime prerequisites of the
kubeadm install guide (overlay, br_netfilter, bridge-nf-call-ip(6)tables)."""
from __future__ import annotations

import fnmatch

KERNEL_MODULES = ("overlay", "br_netfilter")
SYSCTLS = (("net.ipv4.ip_forward", "1"),
           ("net.bridge.bridge-nf-call-iptables", "1"),
           ("net.bridge.bridge-nf-call-ip6tables", "1"))

# Ports of the node's own components (besides the API server, whose port is the endpoint's).
COMPONENT_PORTS = {2379: "etcd", 2380: "etcd", 10250: "the kubelet", 10256: "kube-proxy", 10249: "kube-proxy",
                   10257: "kube-controller-manager", 10259: "kube-scheduler"}
# What kubeadm's preflight wants free before init or join, by role (without the API server's).
PREFLIGHT_PORTS = {"control-plane": (2379, 2380, 10250, 10257, 10259), "worker": (10250,)}

# -- the programs the bake installs at pinned versions, for the image's architecture ----------
# 30-containerd: containerd's release in /usr/local (its shims containerd-*, ctr), runc, crictl,
# the CNI plugins; 40-kubernetes: kubeadm, kubelet, kubectl (kubernetes_binary); 50-images: the
# Helm a pod network plugin is installed with. The node check reads their ELF headers (issue 21).
RUNTIME_BINARIES = ("/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/sbin/runc",
                    "/usr/local/bin/crictl", "/opt/cni/bin/bridge", "/opt/cni/bin/host-local")
HELM_BINARY = "/usr/local/bin/helm"
KUBERNETES_BINARIES = ("kubeadm", "kubelet", "kubectl")
KUBERNETES_PACKAGE_SOURCES = ("pkgs.k8s.io", "dl.k8s.io")


def kubernetes_binary(name: str, package_source: str) -> str:
    """kubeadm, kubelet, kubectl: /usr/bin from pkgs.k8s.io's packages, /usr/local/bin from
    dl.k8s.io (40-kubernetes)."""
    return f"/usr/bin/{name}" if package_source == "pkgs.k8s.io" else f"/usr/local/bin/{name}"


# -- bakery's own paths (issue 18) -----------------------------------------------------------
# Where bakery puts its own files on a node (the image's and the first boot's): spec.image.files
# may not write at or under these, nor where a file does not outlive the bake. A test checks that
# every path of the image files and of the node plan is covered.
OWNED_PATHS = (
    "/etc/kubernetes", "/etc/containerd/config.toml", "/etc/bakery", "/opt/bakery", "/var/lib/bakery",
    "/usr/local/lib/bakery", "/var/log/bakery", "/usr/local/sbin/bakery-", "/etc/systemd/system/bakery-",
    "/etc/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d",
    "/etc/systemd/system/containerd.service.d",
    "/usr/local/lib/systemd/system/containerd.service", "/etc/cni", "/opt/cni", "/var/lib/kubelet",
    "/var/lib/etcd", "/var/lib/containerd", "/etc/crictl.yaml", "/etc/modules-load.d/k8s.conf",
    "/etc/sysctl.d/k8s.conf", "/etc/apt/apt.conf.d/20auto-upgrades", "/etc/apt/keyrings/kubernetes-",
    "/etc/apt/sources.list.d/kubernetes.list", "/usr/local/share/ca-certificates/bakery-",
    "/etc/ssh/ssh_host_", "/etc/systemd/system/ssh.service.d/10-bakery-", "/etc/machine-id",
    "/etc/sudoers.d/90-bakery-build", "/var/log/kubernetes", "/etc/apt/apt.conf.d/90bakery-",
    # the programs above, and the rest of containerd's release
    *RUNTIME_BINARIES, "/usr/local/bin/containerd-", "/usr/local/bin/ctr", HELM_BINARY,
    *(kubernetes_binary(name, source) for name in KUBERNETES_BINARIES for source in KUBERNETES_PACKAGE_SOURCES),
)

# What the seal (90-seal) removes or empties, so that every clone boots as itself: the
# installer's cloud-init, netplan and sshd settings that stop cloud-init on clones
# (image-builder roles/sysprep; cloud-init writes each node's own), cloud-init's state
# (`cloud-init clean`), networkd's leases, every file under /var/log (emptied) and root's
# shell history. A site file there would not reach the nodes as given.
CLOUD_INIT_LEFTOVERS = (
    "/etc/cloud/cloud.cfg.d/99-installer.cfg",
    "/etc/cloud/cloud.cfg.d/90-installer-network.cfg",
    "/etc/cloud/cloud.cfg.d/curtin-preserve-sources.cfg",
    "/etc/cloud/ds-identify.cfg",
    "/etc/ssh/sshd_config.d/50-cloud-init.conf",
    "/etc/netplan/50-cloud-init.yaml",
)
CLOUD_INIT_GLOBS = (
    "/etc/cloud/cloud.cfg.d/*subiquity-disable-cloudinit-networking.cfg",
    "/etc/netplan/00-installer-config*.yaml",
)
SEALED_PATHS = (*CLOUD_INIT_LEFTOVERS, "/var/log", "/var/lib/cloud", "/var/lib/systemd/network",
                "/root/.bash_history", "/etc/shadow-")


def sealed_path(path: str) -> str | None:
    """The entry of SEALED_PATHS or CLOUD_INIT_GLOBS that the seal removes or empties ``path`` by."""
    return owned_path(path, SEALED_PATHS) or next(
        (g for g in CLOUD_INIT_GLOBS if fnmatch.fnmatchcase(path, g)), None)


def owned_path(path: str, prefixes: tuple[str, ...] = OWNED_PATHS) -> str | None:
    """The entry of ``prefixes`` that covers ``path`` (itself, a folder above it, or, for an
    entry ending in '-' or '_', a name starting so), or None."""
    for p in prefixes:
        if path == p or path.startswith(p + "/") or (p[-1] in "-_" and path.startswith(p)):
            return p
    return None


# Where a file placed at the bake does not survive to the nodes (or is not a file at all).
TRANSIENT_PATHS = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/cache/bakery")
