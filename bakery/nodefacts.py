"""What a kubeadm node needs of its kernel, and the ports its components serve: one place for
the bake (modules-load.d, sysctl.d), the node check's expectations and the validation of the
endpoint's port. Sources: kubeadm's preflight (kubernetes `cmd/kubeadm/app/preflight/checks.go`:
PortOpenCheck for the API server's bind port, 10259, 10257, 10250 and, with a local etcd,
2379-2380; FileContentCheck for ip_forward) and the container runtime prerequisites of the
kubeadm install guide (overlay, br_netfilter, bridge-nf-call-ip(6)tables)."""
from __future__ import annotations

KERNEL_MODULES = ("overlay", "br_netfilter")
SYSCTLS = (("net.ipv4.ip_forward", "1"),
           ("net.bridge.bridge-nf-call-iptables", "1"),
           ("net.bridge.bridge-nf-call-ip6tables", "1"))

# Ports of the node's own components (besides the API server, whose port is the endpoint's).
COMPONENT_PORTS = {2379: "etcd", 2380: "etcd", 10250: "the kubelet", 10256: "kube-proxy", 10249: "kube-proxy",
                   10257: "kube-controller-manager", 10259: "kube-scheduler"}
# What kubeadm's preflight wants free before init or join, by role (without the API server's).
PREFLIGHT_PORTS = {"control-plane": (2379, 2380, 10250, 10257, 10259), "worker": (10250,)}
