"""Cilium, installed with Helm from the chart the bake stores: the images the chart deploys by
default, and the values the init node installs it with (the cluster's pod range through
kubeadm's podSubnet, the API server endpoint, the node network)."""
from __future__ import annotations

from ..spec.model import Cilium, Cluster
from ..templating import dump_yaml

TITLE = "Cilium"
CONFIG_FILE = "cilium-values.yaml"


def version(cni: Cilium) -> str:
    return cni.release.version


def images(cni: Cilium) -> list[str]:
    return list(cni.release.images)


def assets(cni: Cilium) -> list[tuple[str, str]]:
    return [(cni.release.chart_name, cni.release.chart_url)]


def replaces_kube_proxy(cni: Cilium) -> bool:
    return cni.kube_proxy_replacement


def describe(cluster: Cluster) -> str:
    c = cluster.cni
    assert isinstance(c, Cilium)
    kpr = ", replaces kube-proxy" if c.kube_proxy_replacement else ""
    return f"IPAM from each node's podCIDR (kubeadm podSubnet), VXLAN tunnel{kpr}"


def values(cluster: Cluster) -> dict:
    c = cluster.cni
    assert isinstance(c, Cilium)
    cp = cluster.control_plane
    return {
        # node.spec.podCIDR, which kube-controller-manager allocates from kubeadm's podSubnet
        # (the chart's default, cluster-pool, would hand out 10.0.0.0/8 instead)
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": c.kube_proxy_replacement,
        # the API server at the control-plane endpoint, not through a Service kube-proxy serves
        "k8sServiceHost": cp.endpoint_host,
        "k8sServicePort": cp.endpoint_port,
        # the operator's replicas want one node each (required anti-affinity)
        "operator": {"replicas": 1 if len(cluster.nodes) == 1 else 2},
    }


def config(cluster: Cluster) -> str:
    return dump_yaml(values(cluster))
