"""`bakery status`: the cluster's Nodes as the API server reports them, against the nodes of
cluster.yaml. A Node is Ready when its condition of type Ready has status "True" (the kubelet's
node lease and status, k8s.io/api core/v1 NodeCondition); the kubelet version is
status.nodeInfo.kubeletVersion. This module reads and compares; the command line prints."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

READY, NOT_READY, MISSING = "Ready", "NotReady", "missing"
NODES_PATH = "/api/v1/nodes"


@dataclass(frozen=True)
class NodeState:
    name: str
    state: str          # Ready | NotReady | missing
    kubelet: str        # "" when missing or not reported
    in_spec: bool       # a node of cluster.yaml

    def line(self) -> str:
        version = self.kubelet or "-"
        extra = "" if self.in_spec else "  (not in cluster.yaml)"
        return f"{self.name:24} {self.state:9} {version}{extra}"


@dataclass(frozen=True)
class Snapshot:
    rows: tuple[NodeState, ...]

    @property
    def wanted(self) -> list[NodeState]:
        return [r for r in self.rows if r.in_spec]

    @property
    def not_ready(self) -> list[NodeState]:
        return [r for r in self.wanted if r.state != READY]

    @property
    def ready(self) -> bool:
        return not self.not_ready

    def summary(self) -> str:
        n = len(self.wanted)
        return f"{n - len(self.not_ready)}/{n} nodes Ready"


def _ready(node: dict) -> str:
    for cond in ((node.get("status") or {}).get("conditions") or []):
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return READY if cond.get("status") == "True" else NOT_READY
    return NOT_READY  # no Ready condition yet: the kubelet has not reported


def compare(spec_nodes: list[str], node_list: dict) -> Snapshot:
    """One row per node of cluster.yaml, in its order, then one per other Node of the cluster."""
    found: dict[str, dict] = {}
    for item in node_list.get("items") or []:
        if isinstance(item, dict):
            name = (item.get("metadata") or {}).get("name")
            if isinstance(name, str):
                found[name] = item
    rows = []
    for name in spec_nodes:
        node = found.get(name)
        if node is None:
            rows.append(NodeState(name, MISSING, "", True))
        else:
            rows.append(NodeState(name, _ready(node), _kubelet(node), True))
    for name in sorted(set(found) - set(spec_nodes)):
        rows.append(NodeState(name, _ready(found[name]), _kubelet(found[name]), False))
    return Snapshot(tuple(rows))


def _kubelet(node: dict) -> str:
    version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
    return version if isinstance(version, str) else ""


def poll(fetch: Callable[[], dict], spec_nodes: list[str], wait_seconds: float, interval: float,
         on_poll: Callable[[Snapshot | None, Exception | None, float], None],
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
         ) -> Snapshot:
    """Ask until every node of cluster.yaml is Ready or wait_seconds have passed; a failed
    request (the API server still starting) is reported and asked again. Returns the last
    snapshot; raises the last request's error when it failed."""
    from ..errors import BakeryError

    start = clock()
    last: Snapshot | None = None
    error: BakeryError | None = None
    while True:
        try:
            last, error = compare(spec_nodes, fetch()), None
        except BakeryError as exc:
            error = exc
        elapsed = clock() - start
        on_poll(last if error is None else None, error, elapsed)
        if error is None and last is not None and last.ready:
            return last
        if elapsed + interval > wait_seconds:
            break
        sleep(interval)
    if error is not None:
        raise error
    assert last is not None
    return last
