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


def plan(cluster, up: Upgrade, out: Path) -> dict:
    q = shlex.quote
    kubectl = f"kubectl --kubeconfig {q(str(out / 'admin.conf'))}"
    new_v = "v" + up.new.lstrip("v")
    create = _create_commands(cluster, out)
    steps = []
    cps = list(cluster.control_plane_nodes)
    replace = up.replaces_control_plane(cluster)
    for i, node in enumerate(cps):
        actions = []
        if i == 0 and replace:
            actions.append(f"set the cluster's ClusterConfiguration to {new_v}, so that joining control-plane nodes "
                           f"run it: {kubectl} -n kube-system get configmap kubeadm-config -o yaml | sed "
                           f"'s/kubernetesVersion: .*/kubernetesVersion: {new_v}/' | {kubectl} apply -f -")
        if replace:
            actions += _replace(cluster, node, out, create)
        else:
            actions += [f"upgrade {node.name} in place (a sole control-plane node cannot be replaced: its "
                        f"replacement would join itself): on it, install kubeadm {up.new}, then `sudo kubeadm "
                        f"upgrade apply {new_v}`, then kubelet and kubectl {up.new} and `sudo systemctl restart "
                        "kubelet` (kubeadm's own upgrade guide)"]
        if i == len(cps) - 1 and replace:
            actions.append(f"bring the addons (kube-proxy, CoreDNS) to {new_v}: on {node.name}, `sudo kubeadm upgrade "
                           f"apply {new_v} --yes` (the control plane runs {new_v} already)")
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
    lines = [f"# Upgrading {cluster.name} from Kubernetes {doc['from']} to {doc['to']}", "",
             f"By replacement: bake the new image ({doc['image']}: `bakery build cluster.yaml`), then replace the "
             "nodes in this order, one at a time, each only once the one before it is Ready. Control-plane nodes "
             "go first: a kubelet may never be newer than the API server. The seeds in this folder join the "
             "running cluster; none runs `kubeadm init`. `upgrade.json` holds the same plan for scripts.", ""]
    if len(cluster.control_plane_nodes) == 1:
        lines += ["**A single control-plane node** cannot be replaced: a new one would have no cluster to join "
                  "but itself, and its etcd holds the cluster's state. It is upgraded in place with `kubeadm "
                  "upgrade apply` (below), or rebuilt from an etcd backup. Its workers are replaced as usual. "
                  "For upgrades by replacement, run three control-plane nodes behind a VIP.", ""]
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
