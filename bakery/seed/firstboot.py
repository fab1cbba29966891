"""Per-node cloud-init (NoCloud seeds): the user-data and the first-boot script it delivers.

For every node: ``nodes/<node>/user-data`` (``#cloud-config``: host name, the default
user, time sync with the site's NTP servers, write_files with the kubeadm configuration, the
first-boot script, the site's run-time proxy for containerd, the kubelet and apt and, on
control-plane nodes, the cluster's CA certificates and keys, the audit policy and the
encryption-at-rest configuration; runcmd runs the script),
``meta-data`` (instance-id derived from the node's seed, local-hostname) and
``network-config`` (version 2: the node-network NIC static, the NAT NIC on DHCP).

Structured documents are built as Python data and dumped as YAML, one module each:
kubeadm.py (init and join configuration), calico.py (the Installation), kubevip.py,
network.py (network-config) and metadata.py (meta-data); this module assembles the
cloud-config. The first-boot shell script is a template (``templates/cloud-init/firstboot.sh.j2``)
that only formats shell-quoted values. Which role gets which file is decided in one place per
role: kubeadm's ``_init_documents`` and ``_join_documents``, and ``_pki_files`` and
``_control_plane_files`` here.
"""
from __future__ import annotations

import functools
from typing import Any

from .. import cni
from .. import plan as P
from ..output.writer import OutputFile
from ..pki.bundle import Bundle
from ..plan.nodes import Action
from ..spec.model import Cluster
from ..templating import dump_yaml, render_template
from . import audit, encryption, kubevip, site
from .kubeadm import kubeadm_documents
from .metadata import meta_data
from .network import network_config

CLOUD_CONFIG_HEADER = "#cloud-config\n"


def _dump_all(docs: list[dict]) -> str:
    return "---\n".join(dump_yaml(d) for d in docs)


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


def _control_plane_files(cluster: Cluster, bundle: Bundle) -> list[dict]:
    """The API server's files of the site's settings, for every control-plane node (a joining
    one's API server gets the same flags and volumes from the cluster's ClusterConfiguration)."""
    out = []
    if cluster.settings.audit_enabled:
        out.append(_file(P.AUDIT_POLICY, dump_yaml(audit.policy(cluster)), "0600"))
    if cluster.settings.encryption_at_rest:
        # holds the key: root's only, in control-plane user-data only
        out.append(_file(P.ENCRYPTION_CONFIG, dump_yaml(encryption.configuration(bundle)), "0600"))
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
        sentinel=P.SENTINEL,
        node_check=P.NODE_CHECK,
        node_check_expected=P.NODE_CHECK_EXPECTED,
        kube_vip_manifest=P.KUBE_VIP_MANIFEST,
        steps_dir=P.FIRSTBOOT_STEPS,
        log_file=P.FIRSTBOOT_LOG,
        helm_home=P.FIRSTBOOT_HELM,
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
        cni=plan.cni,
        cni_dir=P.cni_dir(plan.cni),
        cni_assets=[name for name, _ in plan.cni_assets],
        cni_config=_cni_config_path(cluster),
        kube_vip_after_init=P.KUBE_VIP_AFTER_INIT if _kube_vip(cluster, node_plan)[1] else "",
        join_after=str(node_plan.join_after.address) if node_plan.join_after is not None else "",
        runtime_proxy="1" if cluster.proxy is not None else "",
        commands_env=site.commands_environment(cluster),
        pre_commands=list(cluster.first_boot.pre_commands),
        post_commands=list(cluster.first_boot.post_commands),
    )


def _cni_config_path(cluster: Cluster) -> str:
    return P.cni_config(cni.plugin(cluster.cni).CONFIG_FILE)


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
    if node.is_control_plane:
        files += _control_plane_files(cluster, bundle)
    files += [_file(path, content, mode) for path, content, mode in site.proxy_files(cluster)]
    files.append(_file(P.KUBEADM_CONFIG, _dump_all(kubeadm_documents(cluster, bundle, node_plan)), "0600"))
    if node_plan.action == Action.INIT:
        files.append(_file(_cni_config_path(cluster), cni.plugin(cluster.cni).config(cluster), "0644"))
    vip_first, vip_after = _kube_vip(cluster, node_plan)
    if vip_first is not None:
        files.append(_file(P.KUBE_VIP_MANIFEST, dump_yaml(vip_first), "0600"))
    if vip_after is not None:
        files.append(_file(P.KUBE_VIP_AFTER_INIT, dump_yaml(vip_after), "0600"))
    # 0600: the values may hold the site's commands and the proxy's credentials
    files.append(_file(P.FIRSTBOOT_ENV, firstboot_values(cluster, bundle, plan, node_plan), "0600"))
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
    ntp = site.ntp(cluster)
    if ntp is not None:
        doc["ntp"] = ntp
    # runcmd runs under sh without -e: all logic, and its one failure line, is in the script,
    # which the unit runs (resumable across reboots, unlike runcmd: once per instance).
    runcmd = {"runcmd": firstboot_runcmd()}
    # The document is emitted in pieces (same YAML as one dump) so that write_files
    # entries shared by many nodes are emitted once.
    items = "".join(_write_files_item(f["path"], f["content"], f["permissions"]) for f in files)
    return CLOUD_CONFIG_HEADER + dump_yaml(doc) + "write_files:\n" + items + dump_yaml(runcmd)


def render_node(cluster: Cluster, bundle: Bundle, plan: P.ImagePlan, node_plan: P.NodePlan) -> list[OutputFile]:
    """One node's seed: user-data, meta-data, network-config."""
    node = node_plan.node
    ud = user_data(cluster, bundle, plan, node_plan)
    nc = network_config(cluster, node)
    md = meta_data(cluster, node)
    base = f"nodes/{node.name}"
    common: dict[str, Any] = {"kind": "cloud-init", "node": node.name, "role": node.role}
    # Every user-data holds the token (workers) or keys too (control plane): 0600.
    return [OutputFile(f"{base}/user-data", ud.encode(), secret=True, **common),
            OutputFile(f"{base}/meta-data", md.encode(), **common),
            OutputFile(f"{base}/network-config", nc.encode(), **common)]
