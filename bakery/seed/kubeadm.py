"""kubeadm's configuration for a node: InitConfiguration, ClusterConfiguration and
KubeletConfiguration on the init node, JoinConfiguration on the others.

The site's Kubernetes settings (spec.kubernetes) go into the init node's documents, which kubeadm
stores in the cluster for every later node: the kubelet fields merged into the
KubeletConfiguration (bakery's own fields, bakery/owned.py, written last: they win), the
components' extraArgs (bakery's flags last), extra certSANs, and the audit log's and encryption
at rest's flags and volumes (their files are on every control-plane node: firstboot.py)."""
from __future__ import annotations

import copy

from .. import cni, owned
from .. import plan as P
from ..pki.bundle import TOKEN_GROUPS, TOKEN_USAGES, Bundle, go_duration
from ..plan.nodes import Action
from ..spec.model import Cluster, Node
from . import audit, encryption

KUBELET_API = "kubelet.config.k8s.io/v1beta1"


def kubeadm_api(cluster: Cluster) -> str:
    return f"kubeadm.k8s.io/{cluster.kubernetes.kubeadm_api}"


def _bind_port(cluster: Cluster) -> int:
    # Every API server listens on the endpoint's port: the endpoint is either a
    # control-plane address or the VIP that kube-vip moves between them.
    return cluster.control_plane.endpoint_port


def _node_registration(node: Node, ignore_preflight: tuple[str, ...] = ()) -> dict:
    args = [{"name": "node-ip", "value": str(node.address)}]
    if node.labels:
        args.append({"name": "node-labels", "value": ",".join(f"{k}={v}" for k, v in node.labels.items())})
    taints = []
    for t in node.taints:
        taint = {"key": t.key}
        if t.value:
            taint["value"] = t.value
        taint["effect"] = t.effect
        taints.append(taint)
    return {
        "name": node.name,
        "criSocket": P.CONTAINERD_SOCKET,
        # Every image is in the image already: kubeadm's preflight skips its pulls (it
        # does not check presence then; the node check proves every image is there).
        "imagePullPolicy": "Never",
        # Always written: unset would mean kubeadm's default control-plane taint; []
        # means none (a cluster without workers schedules on its control plane).
        "taints": taints,
        "kubeletExtraArgs": args,
    } | ({"ignorePreflightErrors": list(ignore_preflight)} if ignore_preflight else {})


def cert_sans(cluster: Cluster) -> list[str]:
    """The endpoint, the VIP, then the site's extra names (spec.kubernetes.apiServer.certSANs)."""
    sans = [cluster.control_plane.endpoint_host]
    vip = cluster.control_plane.vip
    for extra in (*([str(vip)] if vip is not None else []), *cluster.settings.api_server_cert_sans):
        if extra not in sans:
            sans.append(extra)
    return sans


def extra_args(cluster: Cluster, pairs: list[tuple[str, str]]) -> list[dict] | dict:
    """A component's extraArgs: v1beta4's list of {name, value} (kubeadm keeps the order, a
    later duplicate wins), or v1beta3's map."""
    if cluster.kubernetes.kubeadm_api == "v1beta3":
        return dict(pairs)
    return [{"name": name, "value": value} for name, value in pairs]


def _api_server(cluster: Cluster) -> dict:
    settings = cluster.settings
    args = list(settings.api_server_args)
    volumes: list[dict] = []
    if settings.audit_enabled:
        args += audit.api_server_args()
        volumes += audit.volumes()
    if settings.encryption_at_rest:
        args += encryption.api_server_args()
        volumes += encryption.volumes()
    out: dict = {"certSANs": cert_sans(cluster)}
    if args:
        out["extraArgs"] = extra_args(cluster, args)
    if volumes:
        out["extraVolumes"] = volumes
    return out


def kubelet_configuration(cluster: Cluster) -> dict:
    """The site's KubeletConfiguration fields, then bakery's own over them."""
    doc = copy.deepcopy(dict(cluster.settings.kubelet))
    doc.update({"apiVersion": KUBELET_API, "kind": "KubeletConfiguration",
                "cgroupDriver": owned.KUBELET_FIELDS["cgroupDriver"].value})
    # apiVersion and kind first, for the reader
    return {"apiVersion": doc.pop("apiVersion"), "kind": doc.pop("kind"), **doc}


def _init_documents(cluster: Cluster, bundle: Bundle, node: Node) -> list[dict]:
    api = kubeadm_api(cluster)
    net = cluster.network
    init = {
        "apiVersion": api,
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "token": bundle.token,
            "description": "bakery: joins the nodes of this cluster",
            "ttl": go_duration(cluster.token_ttl_seconds),
            "usages": list(TOKEN_USAGES),
            "groups": list(TOKEN_GROUPS),
        }],
        "localAPIEndpoint": {"advertiseAddress": str(node.address), "bindPort": _bind_port(cluster)},
        "nodeRegistration": _node_registration(node),
    }
    if cni.plugin(cluster.cni).replaces_kube_proxy(cluster.cni):
        # The pod network plugin replaces kube-proxy: init skips the phase that installs its
        # DaemonSet and ConfigMap (kubeadm's phase name: addon/kube-proxy, cmd/kubeadm/app/cmd/
        # init.go; an unknown name is "invalid phase name", phases/workflow/runner.go;
        # InitConfiguration.skipPhases exists in v1beta3 and v1beta4). Joins run no addon phase;
        # `kubeadm upgrade apply` leaves kube-proxy out while its ConfigMap is missing (its
        # kube-proxy addon step, runKubeProxyAddon: "assume that kube-proxy was skipped during
        # kubeadm init, and that its redeployment on upgrade is not desired").
        init["skipPhases"] = ["addon/kube-proxy"]
    cluster_config = {
        "apiVersion": api,
        "kind": "ClusterConfiguration",
        "clusterName": cluster.name,
        "kubernetesVersion": f"v{cluster.kubernetes_version}",
        "controlPlaneEndpoint": cluster.control_plane.endpoint,
        "certificatesDir": P.PKI_DIR,
        # kubeadm makes the leaf certificates with the same key type as bakery's CAs.
        "encryptionAlgorithm": bundle.kubeadm_encryption_algorithm,
        "networking": {
            "podSubnet": str(net.pod_cidr),
            "serviceSubnet": str(net.service_cidr),
            "dnsDomain": net.dns_domain,
        },
        "apiServer": _api_server(cluster),
    }
    for key, pairs in (("controllerManager", cluster.settings.controller_manager_args),
                       ("scheduler", cluster.settings.scheduler_args)):
        if pairs:
            cluster_config[key] = {"extraArgs": extra_args(cluster, list(pairs))}
    return [init, cluster_config, kubelet_configuration(cluster)]


def _join_preflight_ignores(cluster: Cluster, node: Node) -> tuple[str, ...]:
    # With a VIP, kube-vip's static pod is in /etc/kubernetes/manifests before kubeadm
    # runs (it must hold the VIP while the node joins); join's preflight insists on an
    # empty manifests folder, so that one check is waived (init does not make it).
    if cluster.control_plane.vip is not None and node.is_control_plane:
        return ("DirAvailable--etc-kubernetes-manifests",)
    return ()


def _join_documents(cluster: Cluster, bundle: Bundle, node: Node) -> list[dict]:
    join = {
        "apiVersion": kubeadm_api(cluster),
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "token": bundle.token,
                "apiServerEndpoint": cluster.control_plane.endpoint,
                "caCertHashes": [bundle.discovery_hash],
            },
        },
        "nodeRegistration": _node_registration(node, _join_preflight_ignores(cluster, node)),
    }
    if node.is_control_plane:
        # The CAs are on disk already (write_files), so no certificateKey and no
        # uploaded certificates: kubeadm makes this node's leaf certificates locally.
        join["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": str(node.address), "bindPort": _bind_port(cluster)},
        }
    # A joining node may boot long before the API server has its token: kubeadm keeps
    # retrying discovery for as long as the node is prepared to wait.
    join["timeouts"] = {"discovery": go_duration(cluster.join_timeout_seconds)}
    return [join]


def kubeadm_documents(cluster: Cluster, bundle: Bundle, node_plan: P.NodePlan) -> list[dict]:
    if node_plan.action == Action.INIT:
        return _init_documents(cluster, bundle, node_plan.node)
    return _join_documents(cluster, bundle, node_plan.node)
