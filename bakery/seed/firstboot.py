"""Per-node cloud-init (NoCloud seeds) and the cluster's admin.conf.

For every node: ``nodes/<node>/user-data`` (``#cloud-config``: host name, the default
user, write_files with the kubeadm configuration, the first-boot script and, on
control-plane nodes, the cluster's CA certificates and keys; runcmd runs the script),
``meta-data`` (instance-id derived from the node's seed, local-hostname) and
``network-config`` (version 2: the node-network NIC static, the NAT NIC on DHCP).

Structured documents (kubeadm, Calico, cloud-config, network-config) are built here as
Python data and dumped as YAML; the first-boot shell script is a template
(``templates/cloud-init/firstboot.sh.j2``) that only formats shell-quoted values. Which
role gets which file is decided here, in one place per role: ``_init_documents``,
``_join_documents`` and ``_pki_files``.
"""
from __future__ import annotations

import functools

from . import kubevip
from .. import plan as P
from ..spec.model import Cluster, Node
from ..pki.bundle import TOKEN_GROUPS, TOKEN_USAGES, Bundle, go_duration
from ..templating import dump_yaml, render_template
from ..output.writer import OutputFile

KUBELET_API = "kubelet.config.k8s.io/v1beta1"
CALICO_API = "operator.tigera.io/v1"
CLOUD_CONFIG_HEADER = "#cloud-config\n"


# -- kubeadm --------------------------------------------------------------------------

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
    sans = [cluster.control_plane.endpoint_host]
    vip = cluster.control_plane.vip
    if vip is not None and str(vip) not in sans:
        sans.append(str(vip))
    return sans


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
        "apiServer": {"certSANs": cert_sans(cluster)},
    }
    kubelet = {
        "apiVersion": KUBELET_API,
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }
    return [init, cluster_config, kubelet]


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
    if node_plan.action == "init":
        return _init_documents(cluster, bundle, node_plan.node)
    return _join_documents(cluster, bundle, node_plan.node)


def _dump_all(docs: list[dict]) -> str:
    return "---\n".join(dump_yaml(d) for d in docs)


# -- Calico ---------------------------------------------------------------------------

def _autodetection(cluster: Cluster) -> dict:
    """How calico-node picks the node's address: only one on the node network, never the NAT
    NIC's 10.0.2.15. With a VIP, kube-vip's leader carries the VIP (inside nodeCidr) on the same
    NIC, so `cidrs` could pick it; the kubelet's InternalIP is pinned to the node address by
    node-ip, so Calico takes that instead."""
    if cluster.control_plane.vip is not None:
        return {"kubernetes": "NodeInternalIP"}
    return {"cidrs": [str(cluster.network.node_cidr)]}


def calico_installation(cluster: Cluster) -> dict:
    c = cluster.calico
    pool = {
        "name": "default-ipv4-ippool",
        # The operator refuses a pool outside kubeadm's podSubnet: they are the same CIDR.
        "cidr": str(cluster.network.pod_cidr),
        "encapsulation": c.encapsulation,
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
        "blockSize": 26,
    }
    network = {
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


# -- cloud-init -----------------------------------------------------------------------

def _file(path: str, content: str, mode: str) -> dict:
    return {"path": path, "content": content, "owner": "root:root", "permissions": mode}


def _pki_files(bundle: Bundle) -> list[dict]:
    """The cluster's CAs and the service-account key pair, for control-plane nodes only."""
    d = P.PKI_DIR
    out = []
    for name, pair in (("ca", bundle.ca), ("front-proxy-ca", bundle.front_proxy_ca), ("etcd/ca", bundle.etcd_ca)):
        out.append(_file(f"{d}/{name}.crt", pair.certificate, "0644"))
        out.append(_file(f"{d}/{name}.key", pair.key, "0600"))
    out.append(_file(f"{d}/sa.key", bundle.service_account.key, "0600"))
    out.append(_file(f"{d}/sa.pub", bundle.service_account.certificate, "0644"))
    return out


@functools.cache
def firstboot_script() -> str:
    """The first-boot script: the same on every node of every cluster of this bakery."""
    return render_template(
        "cloud-init/firstboot.sh.j2",
        firstboot_env=P.FIRSTBOOT_ENV,
        kubeadm_config=P.KUBEADM_CONFIG,
        pki_dir=P.PKI_DIR,
        pki_backup=P.FIRSTBOOT_PKI_BACKUP,
        admin_kubeconfig=P.ADMIN_KUBECONFIG,
        calico_dir=P.CALICO_DIR,
        calico_installation=P.CALICO_INSTALLATION,
        sentinel=P.SENTINEL,
        node_check=P.NODE_CHECK,
        kube_vip_manifest=P.KUBE_VIP_MANIFEST,
        steps_dir=P.FIRSTBOOT_STEPS,
        log_file=P.FIRSTBOOT_LOG,
    )


@functools.cache
def firstboot_unit() -> str:
    """The systemd unit that runs the first-boot script until the sentinel exists."""
    return render_template(
        "cloud-init/firstboot.service.j2",
        script=P.FIRSTBOOT_SCRIPT,
        sentinel=P.SENTINEL,
        log_file=P.FIRSTBOOT_LOG,
    )


def firstboot_runcmd() -> list:
    """cloud-init's runcmd: enable the unit (so a reboot resumes an unfinished first boot) and
    start it, waiting for it; on failure its log goes to cloud-init's output as well, so
    `cloud-init status` and /var/log/cloud-init-output.log tell what failed."""
    unit = P.FIRSTBOOT_UNIT_NAME
    start = (f"systemctl start {unit} || {{ rc=$?; cat {P.FIRSTBOOT_LOG} >&2; "
             f"echo 'bakery-firstboot: see journalctl -u {unit}' >&2; exit $rc; }}")
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", unit], ["sh", "-c", start]]


def firstboot_values(cluster: Cluster, bundle: Bundle, plan: P.ImagePlan, node_plan: P.NodePlan) -> str:
    """This node's values for the script, as shell assignments (every value quoted)."""
    node = node_plan.node
    return render_template(
        "cloud-init/firstboot.env.j2",
        script=P.FIRSTBOOT_SCRIPT,
        node_name=node.name,
        node_role=node.role,
        action=node_plan.action,
        node_address=str(node.address),
        node_cidr=str(cluster.network.node_cidr),
        endpoint_host=cluster.control_plane.endpoint_host,
        endpoint_port=cluster.control_plane.endpoint_port,
        join_timeout_seconds=cluster.join_timeout_seconds,
        admin_user=cluster.user,
        ca_not_before=bundle.ca_not_before,
        calico_manifests=[name for name, _ in plan.calico_manifests],
        kube_vip_after_init=P.KUBE_VIP_AFTER_INIT if _kube_vip(cluster, node_plan)[1] else "",
        join_after=str(node_plan.join_after.address) if node_plan.join_after is not None else "",
    )


def _kube_vip(cluster: Cluster, node_plan: P.NodePlan) -> tuple[dict | None, dict | None]:
    """kube-vip manifests for this node: (in place before kubeadm, to switch to after init)."""
    if cluster.control_plane.vip is None or not node_plan.node.is_control_plane:
        return None, None
    return kubevip.manifests(cluster, node_plan.node, node_plan.action)


@functools.lru_cache(maxsize=512)
def _write_files_item(path: str, content: str, mode: str) -> str:
    """One write_files entry as YAML. Cached: the script and the PKI entries are the same
    on many nodes, and emitting long block scalars is most of a render's time."""
    return dump_yaml([_file(path, content, mode)])


def user_data(cluster: Cluster, bundle: Bundle, plan: P.ImagePlan, node_plan: P.NodePlan) -> str:
    node = node_plan.node
    files = []
    if node_plan.needs_pki:
        files += _pki_files(bundle)
    files.append(_file(P.KUBEADM_CONFIG, _dump_all(kubeadm_documents(cluster, bundle, node_plan)), "0600"))
    if node_plan.action == "init":
        files.append(_file(P.CALICO_INSTALLATION, dump_yaml(calico_installation(cluster)), "0644"))
    vip_first, vip_after = _kube_vip(cluster, node_plan)
    if vip_first is not None:
        files.append(_file(P.KUBE_VIP_MANIFEST, dump_yaml(vip_first), "0600"))
    if vip_after is not None:
        files.append(_file(P.KUBE_VIP_AFTER_INIT, dump_yaml(vip_after), "0600"))
    files.append(_file(P.FIRSTBOOT_ENV, firstboot_values(cluster, bundle, plan, node_plan), "0644"))
    files.append(_file(P.FIRSTBOOT_SCRIPT, firstboot_script(), "0700"))
    files.append(_file(P.FIRSTBOOT_UNIT, firstboot_unit(), "0644"))

    user = {
        "name": cluster.user,
        "gecos": "bakery default user",
        "groups": ["sudo"],
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "shell": "/bin/bash",
        "lock_passwd": True,
    }
    if cluster.ssh_authorized_keys:
        user["ssh_authorized_keys"] = list(cluster.ssh_authorized_keys)
    doc = {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "users": [user],
        "ssh_pwauth": False,
        "disable_root": True,
        # First boot downloads nothing: everything is in the image.
        "package_update": False,
        "package_upgrade": False,
        "package_reboot_if_required": False,
    }
    # runcmd runs under sh without -e: all logic, and its one failure line, is in the script,
    # which the unit runs (resumable across reboots, unlike runcmd: once per instance).
    runcmd = {"runcmd": firstboot_runcmd()}
    # The document is emitted in pieces (same YAML as one dump) so that write_files
    # entries shared by many nodes are emitted once.
    items = "".join(_write_files_item(f["path"], f["content"], f["permissions"]) for f in files)
    return CLOUD_CONFIG_HEADER + dump_yaml(doc) + "write_files:\n" + items + dump_yaml(runcmd)


def _renders_to_ifupdown(cluster: Cluster) -> bool:
    from .. import versions

    return versions.OS_RELEASES[cluster.os].family == "debian"


def network_config(cluster: Cluster, node: Node, *, mac: str | None = None, nat: bool = True) -> str:
    """The node's network-config (v2). ``mac``: match the node-network NIC by this MAC (and
    name it node.interface) rather than node.mac; ``nat``: whether the VM has the NAT NIC.
    The seed in nodes/<node>/ is VirtualBox's (NAT NIC + host-only NIC); the Proxmox
    hand-off asks for its own VM's single NIC (deliver.proxmox_seed)."""
    net = cluster.network
    nat_interface = net.nat_interface if nat else None
    mac = mac or node.mac
    ethernets: dict = {}
    if nat_interface is not None and nat_interface != node.interface:
        # The NAT NIC keeps DHCP for egress (10.0.2.15 in VirtualBox).
        ethernets[nat_interface] = {"match": {"name": nat_interface}, "dhcp4": True}
    nic: dict = {}
    if mac:
        nic["match"] = {"macaddress": mac}
        nic["set-name"] = node.interface
    else:
        nic["match"] = {"name": node.interface}
    nic["dhcp4"] = False
    nic["addresses"] = [f"{node.address}/{net.node_cidr.prefixlen}"]
    if net.gateway is not None and nat_interface is None and _renders_to_ifupdown(cluster):
        # Debian's cloud-init writes ifupdown files: a `routes` entry becomes `post-up route
        # add` (net-tools, not in the image), while gateway4 becomes ifupdown's own `gateway`
        # line. With no NAT NIC this is the only default route, so no metric is needed.
        nic["gateway4"] = str(net.gateway)
    elif net.gateway is not None:
        route = {"to": "0.0.0.0/0", "via": str(net.gateway)}
        if nat_interface is not None:
            # Egress stays on the NAT NIC (its DHCP route has metric 100); the node
            # network's gateway is the fallback.
            route["metric"] = 200
        nic["routes"] = [route]
    if net.nameservers:
        nic["nameservers"] = {"addresses": list(net.nameservers)}
    ethernets[node.interface] = nic
    return dump_yaml({"network": {"version": 2, "ethernets": ethernets}})


def instance_id(cluster: Cluster, node: Node) -> str:
    """The node's identity for cloud-init: the cluster, the node and its generation. A new id
    makes cloud-init provision the machine again (per-instance modules: host keys, users,
    write_files, runcmd), so it must not change with the seed's content: a token rotation or
    an unrelated edit of cluster.yaml must leave running nodes alone at their next reboot.
    To re-provision a node on purpose, bump its `generation` in cluster.yaml."""
    return f"{cluster.name}-{node.name}-{node.generation}"


def meta_data(cluster: Cluster, node: Node) -> str:
    return dump_yaml({"instance-id": instance_id(cluster, node), "local-hostname": node.name})


def render_node(cluster: Cluster, bundle: Bundle, plan: P.ImagePlan, node_plan: P.NodePlan) -> list[OutputFile]:
    """One node's seed: user-data, meta-data, network-config."""
    node = node_plan.node
    ud = user_data(cluster, bundle, plan, node_plan)
    nc = network_config(cluster, node)
    md = meta_data(cluster, node)
    base = f"nodes/{node.name}"
    common = {"kind": "cloud-init", "node": node.name, "role": node.role}
    # Every user-data holds the token (workers) or keys too (control plane): 0600.
    return [OutputFile(f"{base}/user-data", ud.encode(), secret=True, **common),
            OutputFile(f"{base}/meta-data", md.encode(), **common),
            OutputFile(f"{base}/network-config", nc.encode(), **common)]



# -- admin.conf -----------------------------------------------------------------------

def admin_kubeconfig(cluster: Cluster, bundle: Bundle) -> str:
    user = "kubernetes-admin"
    context = f"{user}@{cluster.name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster.name,
            "cluster": {
                "certificate-authority-data": bundle.b64(bundle.ca.certificate),
                "server": f"https://{cluster.control_plane.endpoint}",
            },
        }],
        "contexts": [{"name": context, "context": {"cluster": cluster.name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": bundle.b64(bundle.admin.certificate),
                "client-key-data": bundle.b64(bundle.admin.key),
            },
        }],
    }
    return dump_yaml(doc)


def render_cluster_files(cluster: Cluster, bundle: Bundle) -> list[OutputFile]:
    return [OutputFile("admin.conf", admin_kubeconfig(cluster, bundle).encode(), kind="kubeconfig", secret=True)]
