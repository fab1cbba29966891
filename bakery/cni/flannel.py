"""flannel, applied from its release manifest the bake stores, through a kustomization the init
node writes beside it (kubectl's built-in kustomize: `kubectl apply -k`): the cluster's pod
range and backend in net-conf.json, and flanneld pinned to the node's own address.

Facts (flannel-io/flannel at v0.28.x, tests/data/specs/flannel-manifests.json):
- net-conf.json's Network must contain every node's podCIDR, which kube-controller-manager
  allocates from kubeadm's podSubnet (pkg/subnet/kube/kube.go); without Backend, flannel
  falls back to udp (pkg/subnet/config.go), so the type is always written;
- flanneld takes the interface of the default route unless --iface (a name or an address,
  repeatable), --iface-regex or --iface-can-reach says otherwise (main.go); in VirtualBox
  the default route is the NAT NIC, 10.0.2.15 on every VM (Documentation/troubleshooting.md).
  --iface=$(NODE_IP), NODE_IP from the downward API's status.hostIP (the kubelet's node-ip,
  pinned to the node address), picks exactly the node address on every node whatever its
  NIC is called, and never a kube-vip VIP on the same NIC;
- EnableNFTables stays false, as in the manifest (kube-proxy runs in iptables mode).
"""
from __future__ import annotations

import json

from ..spec.model import Cluster, Flannel
from ..templating import dump_yaml

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


def asset_sha256(cni: Flannel) -> dict[str, str]:
    return {}  # upstream publishes no digest of these files


def helm_version(cni: Flannel) -> None:
    return None  # not installed with Helm


def settings(cni: Flannel) -> dict:
    return {"backend": cni.backend}


def describe(cluster: Cluster) -> str:
    c = cluster.cni
    assert isinstance(c, Flannel)
    return f"Network = kubeadm podSubnet, backend {c.backend}, flanneld on the node address"


NAMESPACE = "kube-flannel"
CONFIGMAP = "kube-flannel-cfg"
DAEMONSET = "kube-flannel-ds"
CONTAINER = "kube-flannel"


def net_conf(cluster: Cluster) -> dict:
    c = cluster.cni
    assert isinstance(c, Flannel)
    return {"Network": str(cluster.network.pod_cidr), "EnableNFTables": False, "Backend": {"Type": c.backend}}


def kustomization(cluster: Cluster) -> dict:
    """Two JSON 6902 patches on the release's objects (kustomize `patches` with a target). The
    `test` operations make kustomize stop if the manifest is not the one these were made for."""
    container = "/spec/template/spec/containers/0"
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [MANIFEST],
        "patches": [
            {"target": {"version": "v1", "kind": "ConfigMap", "name": CONFIGMAP, "namespace": NAMESPACE},
             "patch": json.dumps([
                 {"op": "replace", "path": "/data/net-conf.json", "value": json.dumps(net_conf(cluster), indent=2)},
             ])},
            {"target": {"group": "apps", "version": "v1", "kind": "DaemonSet", "name": DAEMONSET,
                        "namespace": NAMESPACE},
             "patch": json.dumps([
                 {"op": "test", "path": f"{container}/name", "value": CONTAINER},
                 {"op": "add", "path": f"{container}/env/-",
                  "value": {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}},
                 {"op": "add", "path": f"{container}/args/-", "value": "--iface=$(NODE_IP)"},
             ])},
        ],
    }


def config(cluster: Cluster) -> str:
    return dump_yaml(kustomization(cluster))
