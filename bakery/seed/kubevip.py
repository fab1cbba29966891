"""kube-vip as a static pod on every control-plane node (ARP mode, leader election).

kubeadm 1.29 and later write admin.conf with a client certificate bound through RBAC
(the ``kubeadm:cluster-admins`` group); during ``kubeadm init`` that binding does not exist
yet, and only ``super-admin.conf`` (system:masters) works. kube-vip must hold the VIP
*during* init, because kubeadm waits for the API server through the endpoint, i.e. the VIP.
So on the init node kube-vip starts with super-admin.conf and is switched to admin.conf
once init has finished; nodes that join later use admin.conf from the start, since
super-admin.conf exists only on the init node. (kube-vip/kube-vip#684;
cluster-api-provider-vsphere's kube-vip-prepare.sh does the same.)
"""
from __future__ import annotations

from ..plan.nodes import Action
from ..spec.model import Cluster, Node

ADMIN_CONF = "/etc/kubernetes/admin.conf"
SUPER_ADMIN_CONF = "/etc/kubernetes/super-admin.conf"


def uses_super_admin(cluster: Cluster) -> bool:
    """Whether this Kubernetes minor writes super-admin.conf at init (1.29 and later)."""
    return cluster.kubernetes.super_admin_conf


def pod(cluster: Cluster, node: Node, kubeconfig: str = ADMIN_CONF) -> dict:
    """The kube-vip Pod for a control-plane node, using the given kubeconfig on the host."""
    cp = cluster.control_plane
    env = [
        ("vip_arp", "true"),
        ("port", str(cp.endpoint_port)),
        ("vip_interface", node.interface),
        # the VIP's prefix length (kube-vip v1.0 reads vip_subnet, pkg/kubevip/config_envvar.go;
        # vip_cidr is a name from old example manifests that it ignores)
        ("vip_subnet", "32"),
        ("dns_mode", "first"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", "plndr-cp-lock"),
        ("vip_leaseduration", "5"),
        ("vip_renewdeadline", "3"),
        ("vip_retryperiod", "1"),
        ("address", str(cp.vip)),
    ]
    env_list: list[dict] = [{"name": k, "value": v} for k, v in env[:2]]
    env_list.append({"name": "vip_nodename", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    env_list += [{"name": k, "value": v} for k, v in env[2:]]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "containers": [{
                "name": "kube-vip",
                "image": f"ghcr.io/kube-vip/kube-vip:{cp.kube_vip_version}",
                "imagePullPolicy": "IfNotPresent",  # pre-pulled at bake time: never pulled at boot
                "args": ["manager"],
                "env": env_list,
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                "volumeMounts": [{"name": "kubeconfig", "mountPath": ADMIN_CONF}],
            }],
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}],
            "hostNetwork": True,
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": kubeconfig, "type": "FileOrCreate"}}],
        },
    }


def manifests(cluster: Cluster, node: Node, action: Action) -> tuple[dict, dict | None]:
    """(the manifest to start with, the one to switch to after kubeadm init, or None)."""
    if action == Action.INIT and uses_super_admin(cluster):
        return pod(cluster, node, SUPER_ADMIN_CONF), pod(cluster, node, ADMIN_CONF)
    return pod(cluster, node, ADMIN_CONF), None
