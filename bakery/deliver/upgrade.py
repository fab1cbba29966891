"""Upgrades by replacement: the ordered plan a render writes when the cluster's Kubernetes
version differs from the one its output folder was rendered for (manifest.json).

Immutable nodes are upgraded by replacing them, as Cluster API's KubeadmControlPlane rollout
does: before the first new control-plane node, the cluster's ClusterConfiguration (the
kubeadm-config ConfigMap) is set to the new version, so that `kubeadm join --control-plane`
writes the new version's static pods (CAPI: UpdateKubernetesVersionInKubeadmConfigMap); then
each control-plane node in turn is drained, its etcd member removed, its VM destroyed and
re-created from the new image with a join seed, and waited for; after the last one, `kubeadm
upgrade apply` on it brings the addons (kube-proxy, CoreDNS) to the new version (the control
plane is already there, so it changes nothing else); then the workers, one at a time.

The version-skew policy (kubernetes.io/releases/version-skew-policy) decides what is refused:
kubeadm upgrades one minor at a time ("skipping MINOR versions when upgrading is
unsupported"), API servers of an HA control plane are at most one minor apart, and a kubelet
is never newer than the API server, which is why control-plane nodes go first. A downgrade is
not supported by kubeadm at all.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..output.writer import OutputFile
from . import retire

PLAN_NAME = "upgrade.json"
DOC_NAME = "UPGRADE.md"


def _minor_patch(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(x) for x in version.lstrip("v").split(".")[:3])
    return major, minor, patch


def check_skew(old: str, new: str) -> None:
    """Refuse a downgrade or a jump of more than one minor (check upgrade-skew)."""
    a, b = _minor_patch(old), _minor_patch(new)
    if b < a:
        raise InputError(f"spec.kubernetes.version {new} is older than {old}, which this output folder was rendered "
                         "for: kubeadm does not downgrade a cluster; render a new cluster into a new folder",
                         check="upgrade-skew")
    if b[:2] > (a[0], a[1] + 1) or b[0] != a[0]:
        raise InputError(f"spec.kubernetes.version {new} is more than one minor after {old}, which this output folder "
                         f"was rendered for: kubeadm upgrades one minor at a time (the version-skew policy); go to "
                         f"{a[0]}.{a[1] + 1} first, replace every node, then render again",
                         check="upgrade-skew")


@dataclass(frozen=True)
class Upgrade:
    old: str
    new: str
    image: str

    def replaces_control_plane(self, cluster) -> bool:
        """Whether control-plane nodes can be replaced: not a sole one (it would join itself),
        not one whose address is the endpoint."""
        return len(cluster.control_plane_nodes) > 1 and cluster.control_plane.endpoint_host not in {
            str(n.address) for n in cluster.control_plane_nodes}


TOKEN_STEP = ("before the first new node: make sure the join token is valid; a bundle's token expires tokenTTL after "
              "it was registered, long before an upgrade: render with --rotate-token and run the `kubeadm token "
              "create …` command it prints on a control-plane node")


def _in_place(node, up: Upgrade, first: bool, kubectl: str) -> list[str]:
    """kubeadm's own upgrade of one node in place ("Upgrading kubeadm clusters": the package
    repository of the new minor, kubeadm first, `upgrade apply` on the first control-plane
    node and `upgrade node` on the others, then kubelet and kubectl, held again)."""
    v, minor = up.new.lstrip("v"), ".".join(up.new.lstrip("v").split(".")[:2])
    upgrade = f"sudo kubeadm upgrade apply v{v} --yes" if first else "sudo kubeadm upgrade node"
    return [
        f"drain {node.name}: {kubectl} drain {node.name} --ignore-daemonsets --delete-emptydir-data",
        f"on {node.name}: point apt at the {minor} packages (pkgs.k8s.io has one repository per minor): sudo sed -i "
        f"'s#/core:/stable:/v[0-9.]*/#/core:/stable:/v{minor}/#' /etc/apt/sources.list.d/kubernetes.list && sudo "
        "apt-get update",
        f"on {node.name}: sudo apt-mark unhold kubeadm && sudo apt-get install -y kubeadm='{v}-*' && "
        "sudo apt-mark hold kubeadm",
        f"on {node.name}: {upgrade}",
        f"on {node.name}: sudo apt-mark unhold kubelet kubectl && sudo apt-get install -y kubelet='{v}-*' "
        f"kubectl='{v}-*' && sudo apt-mark hold kubelet kubectl && sudo systemctl daemon-reload && "
        "sudo systemctl restart kubelet",
        f"uncordon {node.name}: {kubectl} uncordon {node.name}",
    ]


def plan(cluster, up: Upgrade, out: Path) -> dict:
    q = shlex.quote
    kubectl = f"kubectl --kubeconfig {q(str(out / 'admin.conf'))}"
    new_v = "v" + up.new.lstrip("v")
    create = _create_commands(cluster, out)
    steps = []
    cps = list(cluster.control_plane_nodes)
    replace = up.replaces_control_plane(cluster)
    for i, node in enumerate(cps):
        actions = [TOKEN_STEP] if i == 0 else []
        if replace:
            if i == 0:
                actions.append(f"set the cluster's ClusterConfiguration to {new_v}, so that joining control-plane "
                               f"nodes run it: {kubectl} -n kube-system get configmap kubeadm-config -o yaml | sed "
                               f"'s/kubernetesVersion: v[0-9][0-9.]*/kubernetesVersion: {new_v}/' | "
                               f"{kubectl} replace -f -")
            actions += _replace(cluster, node, out, create)
            if i == len(cps) - 1:
                actions.append(f"bring the addons (kube-proxy, CoreDNS) to {new_v}: on {node.name}, `sudo kubeadm "
                               f"upgrade apply {new_v} --yes` (the control plane runs {new_v} already)")
        else:
            actions += _in_place(node, up, i == 0, kubectl)
        steps.append({"node": node.name, "role": node.role, "actions": actions})
    for node in cluster.workers:
        steps.append({"node": node.name, "role": node.role, "actions": _replace(cluster, node, out, create)})
    return {"from": up.old, "to": up.new, "image": up.image, "steps": steps}


def _create_commands(cluster, out: Path) -> dict[str, str]:
    from ..providers import proxmox, virtualbox

    q = shlex.quote
    found = {}
    if virtualbox.BUILDER in cluster.image.builders:
        found["VirtualBox"] = f"{q(str(out / 'virtualbox' / 'create-vms.sh'))} NODE"
    if proxmox.BUILDER in cluster.image.builders:
        found["Proxmox"] = "./proxmox/deploy.sh NODE (or bakery deploy proxmox --node NODE)"
    return found


def _replace(cluster, node, out: Path, create: dict[str, str]) -> list[str]:
    """One node's replacement: retire's steps up to the VM's destruction, then the new VM."""
    actions = []
    for s in retire.steps(cluster, node.name, out):
        if s.step == "cluster-yaml":
            continue
        actions.append(f"{s.what}: {s.run}" if s.run else s.what)
    made = "; ".join(f"{where}: {cmd.replace('NODE', node.name)}" for where, cmd in create.items()) or \
        "with your hypervisor"
    actions.append(f"create {node.name} from the new image with its join seed ({made})")
    actions.append(f"wait until {node.name} is Ready: kubectl --kubeconfig {shlex.quote(str(out / 'admin.conf'))} wait "
                   f"--for=condition=Ready node/{node.name} --timeout=20m")
    actions.append(f"uncordon {node.name}: kubectl --kubeconfig {shlex.quote(str(out / 'admin.conf'))} uncordon "
                   f"{node.name}")
    return actions


def markdown(cluster, doc: dict) -> str:
    up = Upgrade(doc["from"], doc["to"], doc["image"])
    replace = up.replaces_control_plane(cluster)
    lines = [f"# Upgrading {cluster.name} from Kubernetes {doc['from']} to {doc['to']}", "",
             f"Bake the new image ({doc['image']}: `bakery build cluster.yaml`), then go through the nodes in this "
             "order, one at a time, each only once the one before it is Ready. Control-plane nodes go first: a "
             "kubelet may never be newer than the API server. `upgrade.json` holds the same plan for scripts. "
             "When every node runs the new version, `bakery render --upgrade-done` drops this plan.", ""]
    if replace:
        lines += ["Every node is replaced: the seeds in this folder join the running cluster, none runs `kubeadm "
                  "init`. Each control-plane node is removed before its replacement joins, so etcd has one member "
                  "fewer meanwhile (Cluster API adds the new machine first instead); replace them one at a time.", ""]
    elif len(cluster.control_plane_nodes) == 1:
        lines += ["**A single control-plane node** cannot be replaced: a new one would have no cluster to join "
                  "but itself, and its etcd holds the cluster's state. It is upgraded in place with kubeadm (below), "
                  "or rebuilt from an etcd backup; do not re-create it from its seed, which runs `kubeadm init`. Its "
                  "workers are replaced. For upgrades by replacement, run three control-plane nodes behind a VIP.",
                  ""]
    else:
        lines += ["**The endpoint is a control-plane node's own address**, so that node cannot be replaced (its "
                  "replacement would join itself): the control-plane nodes are upgraded in place with kubeadm "
                  "(`kubeadm upgrade apply` on the first, `kubeadm upgrade node` on the others), and the workers "
                  "are replaced. With a VIP (spec.controlPlane.vip) every node can be replaced.", ""]
    for i, step in enumerate(doc["steps"], 1):
        lines.append(f"## {i}. {step['node']} ({step['role']})")
        lines.append("")
        lines += [f"{j}. {a}" for j, a in enumerate(step["actions"], 1)]
        lines.append("")
    return "\n".join(lines)


def files(cluster, up: Upgrade, out: Path) -> list[OutputFile]:
    doc = plan(cluster, up, out)
    return [OutputFile(PLAN_NAME, (json.dumps(doc, indent=2) + "\n").encode(), kind="upgrade"),
            OutputFile(DOC_NAME, markdown(cluster, doc).encode(), kind="upgrade")]
