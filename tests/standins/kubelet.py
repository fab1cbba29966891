"""STAND-IN for the kubelet's start (bakery's tests; not Kubernetes): what kubeadm's
kubelet-start phase hands the kubelet, and the kubelet's refusals at start.

- ``--node-ip`` (kubeletExtraArgs) must be an address of the node (pkg/kubelet/nodestatus:
  "failed to get node address from cloud provider that matches ip"; the kubelet refuses an
  address no interface has). Unset, the kubelet takes the address of the default route's
  interface (`k8s.io/apimachinery/pkg/util/net.ResolveBindAddress`, ChooseHostInterface): in
  VirtualBox the NAT address, 10.0.2.15, the same on every VM. The stand-in records that
  InternalIP; the lab's cluster checks refuse an InternalIP outside the node network.
- ``cgroupDriver`` (KubeletConfiguration; kubeadm defaults it to systemd since 1.22,
  `cmd/kubeadm/app/componentconfigs/kubelet.go`) must equal containerd's (runc's
  ``SystemdCgroup``): "misconfiguration: kubelet cgroup driver: X is different from docker/CRI
  cgroup driver: Y". From 1.36 the kubelet asks the CRI and containerd must say systemd.
- The CRI socket must exist (the kubelet cannot start its runtime service otherwise).
"""
from __future__ import annotations

import tomllib

import simcluster as sim


def containerd_cgroup_driver() -> str | None:
    """systemd or cgroupfs from the node's /etc/containerd/config.toml (config versions 2 and 3
    name runc's options under different plugins); None when the file does not parse."""
    p = sim.path("/etc/containerd/config.toml")
    if not p.is_file():
        return None
    try:
        cfg = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError:
        return None
    plugins = cfg.get("plugins") or {}
    for plugin in ("io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri"):
        runc = (((plugins.get(plugin) or {}).get("containerd") or {}).get("runtimes") or {}).get("runc") or {}
        if "options" in runc:
            return "systemd" if runc["options"].get("SystemdCgroup") is True else "cgroupfs"
    return "cgroupfs"  # containerd's default: no SystemdCgroup


def cri_socket_present(socket: str) -> bool:
    return socket.startswith("unix://") and sim.path(socket.removeprefix("unix://")).is_socket()


def start(step: str, node_name: str, extra_args: dict[str, str], kubelet_config: dict, cri_socket: str) -> str:
    """Check what the kubelet would refuse; returns the node's InternalIP."""
    node = sim.node()
    if not cri_socket_present(cri_socket):
        sim.violation(step, f"kubelet: the CRI socket {cri_socket} does not exist (is containerd running?)")
    node_ip = extra_args.get("node-ip")
    if node_ip is not None:
        for ip in node_ip.split(","):
            if ip not in node["addresses"]:
                sim.violation(step, f"kubelet: --node-ip {ip} is not an address of {node_name} "
                                    f"(its addresses: {', '.join(sorted(node['addresses']))})")
        internal = node_ip.split(",")[0]
    else:
        internal = node["defaultRouteAddress"]
    driver = kubelet_config.get("cgroupDriver", "systemd")
    runtime = containerd_cgroup_driver()
    if runtime is None:
        sim.violation(step, "kubelet: containerd's configuration /etc/containerd/config.toml is missing or does not parse")
    if driver != runtime:
        sim.violation(step, f"kubelet: misconfiguration: kubelet cgroup driver: \"{driver}\" is different from "
                            f"the CRI's (containerd, SystemdCgroup) cgroup driver: \"{runtime}\"")
    if runtime != "systemd":
        sim.violation(step, "kubelet: containerd's runc does not use the systemd cgroup driver (SystemdCgroup = true); "
                            "the kubelet 1.36+ takes the driver from the CRI, and kubeadm's default is systemd")
    return internal


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--version"]:
        print("stand-in kubelet: kubeadm starts the kubelet (kubelet.start); only --version here", file=sys.stderr)
        sys.exit(1)
    print("Kubernetes v" + sim.node()["kubernetesVersion"].lstrip("v"))
