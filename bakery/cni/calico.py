"""Calico, installed by the Tigera operator: the manifests the bake stores, the images they
run, and the Installation resource the init node applies with the cluster's pod range."""
from __future__ import annotations

from ..spec.model import Calico, Cluster
from ..templating import dump_yaml

TITLE = "Calico"
CONFIG_FILE = "calico-installation.yaml"
CALICO_API = "operator.tigera.io/v1"


def version(cni: Calico) -> str:
    return cni.release.version


def images(cni: Calico) -> list[str]:
    return cni.release.images()


def assets(cni: Calico) -> list[tuple[str, str]]:
    return [(name, cni.release.manifest_url(name)) for name in cni.release.manifests()]


def replaces_kube_proxy(cni: Calico) -> bool:
    return False


def asset_sha256(cni: Calico) -> dict[str, str]:
    return {}  # upstream publishes no digest of these files


def helm_version(cni: Calico) -> None:
    return None  # not installed with Helm


def settings(cni: Calico) -> dict:
    return {"encapsulation": cni.encapsulation, "mtu": cni.mtu}


def describe(cluster: Cluster) -> str:
    c = cluster.cni
    assert isinstance(c, Calico)
    mtu = f", MTU {c.mtu}" if c.mtu else ""
    return f"IP pool = kubeadm podSubnet, encapsulation {c.encapsulation}{mtu}"


def config(cluster: Cluster) -> str:
    return dump_yaml(calico_installation(cluster))


def _autodetection(cluster: Cluster) -> dict:
    """How calico-node picks the node's address: only one on the node network, never the NAT
    NIC's 10.0.2.15. With a VIP, kube-vip's leader carries the VIP (inside nodeCidr) on the same
    NIC, so `cidrs` could pick it; the kubelet's InternalIP is pinned to the node address by
    node-ip, so Calico takes that instead."""
    if cluster.control_plane.vip is not None:
        return {"kubernetes": "NodeInternalIP"}
    return {"cidrs": [str(cluster.network.node_cidr)]}


def calico_installation(cluster: Cluster) -> dict:
    c = cluster.cni
    assert isinstance(c, Calico)
    pool = {
        "name": "default-ipv4-ippool",
        # The operator refuses a pool outside kubeadm's podSubnet: they are the same CIDR.
        "cidr": str(cluster.network.pod_cidr),
        "encapsulation": c.encapsulation,
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
        "blockSize": 26,
    }
    network: dict[str, object] = {
        # Full VXLAN needs no BGP; IPIP and unencapsulated routing do.
        "bgp": "Disabled" if c.encapsulation == "VXLAN" else "Enabled",
        "ipPools": [pool],
        "nodeAddressAutodetectionV4": _autodetection(cluster),
    }
    if c.mtu is not None:
        network["mtu"] = c.mtu
    registry = c.release.registry.split("/")[0] + "/"
    return {
        "apiVersion": CALICO_API,
        "kind": "Installation",
        "metadata": {"name": "default"},
        "spec": {
            # The registry the bake pre-pulled Calico's images from (see versions.py), so
            # the operator asks containerd for exactly those images.
            "registry": registry,
            "calicoNetwork": network,
        },
    }
