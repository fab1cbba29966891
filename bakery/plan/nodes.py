"""The node plans: what each node's first boot does (init, join as control plane, join as
worker) and after which node it joins."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .. import cni
from ..spec.model import Cluster, Node


class Action(StrEnum):
    """What a node's first boot does; the value is what the first-boot script reads (ACTION)."""

    INIT = "init"
    JOIN_CONTROL_PLANE = "join-control-plane"
    JOIN_WORKER = "join-worker"


def first_boot(cluster: Cluster) -> dict[Action, str]:
    """What each action's first boot runs, in words (bakery explain, README, the hand-off scripts)."""
    return {
        Action.INIT: f"kubeadm init, then installs {cni.title(cluster.cni)}",
        Action.JOIN_CONTROL_PLANE: "kubeadm join --control-plane",
        Action.JOIN_WORKER: "kubeadm join (worker)",
    }


@dataclass(frozen=True)
class NodePlan:
    node: Node
    action: Action
    # A joining control-plane node waits until this control-plane node (the one before it in
    # cluster.yaml) is ready: etcd adds one member at a time (kubeadm's learner mode promotes
    # one learner before the next may join), so control-plane nodes join one after another.
    join_after: Node | None = None

    @property
    def needs_pki(self) -> bool:
        return self.action != Action.JOIN_WORKER


def node_plans(cluster: Cluster) -> list[NodePlan]:
    """One plan per node. A new cluster: the first control-plane node runs kubeadm init, the
    others join. A running one (spec.bootstrap.initialized): no node runs kubeadm init; every
    control-plane node, the first included, joins with --control-plane, so any can be
    re-created. The chain of JOIN_AFTER stays (each control-plane node waits for the one
    before it in cluster.yaml, which in a running cluster is ready already): it orders nodes
    made together only when they are neighbours in the file, so control-plane nodes are
    re-created one at a time (README, Day 2)."""
    init = None if cluster.initialized else cluster.init_node
    out = []
    previous_control_plane: Node | None = None
    for node in cluster.nodes:
        join_after = None
        if node is init:
            action = Action.INIT
        elif node.is_control_plane:
            action = Action.JOIN_CONTROL_PLANE
            join_after = previous_control_plane  # None for the first control-plane node
        else:
            action = Action.JOIN_WORKER
        if node.is_control_plane:
            previous_control_plane = node
        out.append(NodePlan(node, action, join_after))
    return out

