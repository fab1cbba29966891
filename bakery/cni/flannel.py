"""flannel, applied from its release manifest the bake stores, through a kustomization the init
node writes beside it: the cluster's pod range and backend in net-conf.json, and flanneld
pinned to the node's own address."""
from __future__ import annotations

from ..spec.model import Cluster, Flannel

TITLE = "flannel"
CONFIG_FILE = "flannel-kustomization.yaml"
MANIFEST = "kube-flannel.yml"


def version(cni: Flannel) -> str:
    return cni.release.version


def images(cni: Flannel) -> list[str]:
    return cni.release.images()


def assets(cni: Flannel) -> list[tuple[str, str]]:
    return [(MANIFEST, cni.release.manifest_url)]


def replaces_kube_proxy(cni: Flannel) -> bool:
    return False


def describe(cluster: Cluster) -> str:
    c = cluster.cni
    assert isinstance(c, Flannel)
    return f"Network = kubeadm podSubnet, backend {c.backend}, flanneld on the node address"


def config(cluster: Cluster) -> str:
    raise NotImplementedError
