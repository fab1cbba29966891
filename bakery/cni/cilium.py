"""Cilium, installed with Helm from the chart the bake stores: the images the chart deploys by
default, and the values the init node installs it with (the cluster's pod range through
kubeadm's podSubnet, the API server endpoint, the node network).

Every value bakery sets exists in the values.schema.json of each catalog release (the chart's
own, tests/data/specs/cilium-values-schema-<version>.json; helm validates the values against
it at install). Sources: the chart tgz of each release in github.com/cilium/charts (values.yaml,
values.schema.json, templates) and Cilium's docs (ipam/kubernetes.rst, kubeproxy-free.rst),
summarized in the research notes of issue 20."""
from __future__ import annotations

from .. import versions
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


def asset_sha256(cni: Cilium) -> dict[str, str]:
    """The digest each stored file must have: the chart's, from the repository's index.yaml."""
    return {cni.release.chart_name: cni.release.chart_sha256}


def helm_version(cni: Cilium) -> str:
    """The Helm the bake installs for the first boot's `helm upgrade --install`."""
    return versions.HELM_VERSION


def replaces_kube_proxy(cni: Cilium) -> bool:
    return cni.kube_proxy_replacement


def settings(cni: Cilium) -> dict:
    return {"kubeProxyReplacement": cni.kube_proxy_replacement}


def describe(cluster: Cluster) -> str:
    c = cluster.cni
    assert isinstance(c, Cilium)
    kpr = ", replaces kube-proxy" if c.kube_proxy_replacement else ""
    return f"IPAM from each node's podCIDR (kubeadm podSubnet), VXLAN tunnel{kpr}"


def values(cluster: Cluster) -> dict:
    """The chart's values (helm's --values file).

    The node network needs no value: the agent takes the node's address from the Node's
    InternalIP (pkg/node/addressing ExtractNodeIP: InternalIP first), which the kubelet's node-ip
    pins to the node-network address on every node (seed/kubeadm.py), so the tunnel and, with
    kube-proxy replacement, the direct-routing device are the node NIC, never VirtualBox's NAT
    NIC (10.0.2.15 on every VM). `devices` is left to auto-detection: it is in the schema of 1.20
    only (1.18 and 1.19 have it as a comment in values.yaml), and pinning NodePort to one NIC
    name would break nodes whose NICs are named otherwise."""
    c = cluster.cni
    assert isinstance(c, Cilium)
    cp = cluster.control_plane
    return {
        # node.spec.podCIDR, which kube-controller-manager allocates from kubeadm's podSubnet
        # (ipam/kubernetes.rst); the chart's default, cluster-pool, hands out its own
        # clusterPoolIPv4PodCIDRList (10.0.0.0/8), outside kubeadm's podSubnet
        "ipam": {"mode": "kubernetes"},
        # a boolean: the template accepts true/false or the strings "true"/"false" (1.18-1.20)
        "kubeProxyReplacement": c.kube_proxy_replacement,
        # the API server at the control-plane endpoint (the VIP with kube-vip), not through the
        # kubernetes Service, which without kube-proxy nothing serves until Cilium runs
        # (kubeproxy-free.rst); set either way, so Cilium never depends on kube-proxy to start
        "k8sServiceHost": cp.endpoint_host,
        "k8sServicePort": cp.endpoint_port,
        # the operator's default affinity is a required pod anti-affinity per host
        # (kubernetes.io/hostname): more replicas than nodes leaves one Pending forever
        "operator": {"replicas": min(2, len(cluster.nodes))},
    }


def config(cluster: Cluster) -> str:
    return dump_yaml(values(cluster))
