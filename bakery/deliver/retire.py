"""`bakery retire CLUSTER NODE`: what takes one node out of a running cluster cleanly, in order.

The order is kubeadm's and Kubernetes' own for removing a node (kubernetes.io "Safely Drain a
Node"; kubeadm "Clean up": drain, then `kubeadm reset` on the node, then `kubectl delete
node`): cordon so nothing new lands on it, drain so its pods move, for a control-plane node
remove its etcd member while the others keep quorum (etcd "Runtime reconfiguration": remove a
member before its replacement is added), delete the Node object, and only then destroy the
VM. bakery prints the steps; it runs none of them.

The etcd step runs etcdctl inside the etcd static pod of another control-plane node (the
etcd image ships etcdctl; kubeadm names the pod etcd-<node> and the member after the node, and
puts the client certificates under /etc/kubernetes/pki/etcd), so it works whether or not the
node being retired still runs.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from ..providers import proxmox, virtualbox

ETCDCTL = ("etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
           "--cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key")


@dataclass(frozen=True)
class Step:
    step: str  # a stable name: cordon, drain, etcd-member, node-object, vm, cluster-yaml
    what: str  # one line, for people
    run: str  # the command, or "" for a step only the user can do
    where: str  # where to run it


def _node(cluster, node_name: str):
    node = next((n for n in cluster.nodes if n.name == node_name), None)
    if node is None:
        raise InputError(f"{node_name} is not a node of cluster {cluster.name} (its nodes: "
                         f"{', '.join(n.name for n in cluster.nodes)})", check="retire-node")
    return node


def steps(cluster, node_name: str, out: Path) -> list[Step]:
    """The ordered steps that retire ``node_name``; InputError for a node that is not in the
    cluster or whose removal would break it (the last control-plane node)."""
    node = _node(cluster, node_name)
    others = [n for n in cluster.control_plane_nodes if n.name != node.name]
    if node.is_control_plane and not others:
        raise InputError(f"{node.name} is the only control-plane node of {cluster.name}: retiring it ends the "
                         "cluster (its etcd holds the cluster's state); destroy the whole cluster instead",
                         check="retire-last-control-plane")
    q = shlex.quote
    kubectl = f"kubectl --kubeconfig {q(str(out / 'admin.conf'))}"
    here = "anywhere with the cluster's admin.conf"
    out_steps = [
        Step("cordon", f"mark {node.name} unschedulable", f"{kubectl} cordon {q(node.name)}", here),
        Step("drain", f"move {node.name}'s pods to other nodes (DaemonSet pods stay)",
             f"{kubectl} drain {q(node.name)} --ignore-daemonsets --delete-emptydir-data --timeout=10m", here),
    ]
    if node.is_control_plane:
        peer = others[0].name
        member = (f"{kubectl} -n kube-system exec etcd-{peer} -- {ETCDCTL}")
        out_steps.append(Step(
            "etcd-member", f"remove {node.name}'s etcd member, through the etcd pod on {peer}",
            f"id=$({member} member list | awk -F', ' -v n={q(node.name)} '$3 == n {{print $1}}') && "
            f"if [ -n \"$id\" ]; then {member} member remove \"$id\"; "
            f"else echo {q(f'no etcd member {node.name}: removed already')}; fi", here))
    out_steps.append(Step("node-object", f"delete the Node object {node.name}",
                          f"{kubectl} delete node {q(node.name)}", here))
    builders = cluster.image.builders
    if virtualbox.BUILDER in builders:
        out_steps.append(Step("vm", f"destroy {node.name}'s VirtualBox VM",
                              f"{q(str(out / 'virtualbox' / 'destroy-vms.sh'))} {q(node.name)}",
                              "the VirtualBox host"))
    if proxmox.BUILDER in builders:
        px = cluster.image.proxmox
        on_host = f" on {node.proxmox_node}, reached over ssh" if node.proxmox_node != px.node else ""
        out_steps.append(Step("vm", f"destroy {node.name}'s Proxmox VM {node.vm_id}{on_host} and its snippets "
                                    "(copy the output's proxmox/ folder there again first if it has no destroy.sh)",
                              f"./proxmox/destroy.sh {q(node.name)}", f"root on the Proxmox VE node {px.node}"))
    if not any(s.step == "vm" for s in out_steps):
        out_steps.append(Step("vm", f"destroy {node.name}'s VM", "", "your hypervisor"))
    out_steps.append(Step("cluster-yaml", f"remove {node.name} from cluster.yaml, or keep it there to re-create "
                                          "the node from its seed; either way set spec.bootstrap.initialized: true "
                                          "(the cluster runs: no seed may run kubeadm init again) and render again",
                          "", "cluster.yaml"))
    return out_steps


def warnings(cluster, node_name: str) -> list[str]:
    """What the cluster loses by this retirement, when it matters."""
    node = _node(cluster, node_name)
    if not node.is_control_plane:
        return []
    left = len(cluster.control_plane_nodes) - 1
    out = []
    if left % 2 == 0:
        out.append(f"warning[control-plane-even]: {left} control-plane nodes remain; etcd with {left} members "
                   f"tolerates {(left - 1) // 2} failure{'s' if (left - 1) // 2 != 1 else ''}, as many as with "
                   f"{left - 1}")
    cp = cluster.control_plane
    if cp.vip is None and cp.endpoint_host == str(node.address):
        out.append(f"warning[endpoint-host]: the endpoint {cp.endpoint} is {node.name}'s address; after it goes, "
                   "nothing answers there: point spec.controlPlane.endpoint at another control-plane node, and "
                   "every kubeconfig and kubelet with it")
    return out


def as_json(cluster, node_name: str, out: Path) -> dict:
    node = _node(cluster, node_name)
    return {"cluster": cluster.name, "node": node.name, "role": node.role,
            "steps": [asdict(s) for s in steps(cluster, node_name, out)], "warnings": warnings(cluster, node_name)}


def text(cluster, node_name: str, out: Path) -> list[str]:
    lines = [f"retire {node_name} from cluster {cluster.name}, in this order:"]
    for i, s in enumerate(steps(cluster, node_name, out), 1):
        if s.run:
            lines.append(f"{i}. {s.what} ({s.where}):")
            lines.append(f"   {s.run}")
        else:
            lines.append(f"{i}. {s.what}.")
    return lines
