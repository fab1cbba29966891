"""The node's meta-data: instance-id and local-hostname."""
from __future__ import annotations

from ..spec.model import Cluster, Node
from ..templating import dump_yaml


def instance_id(cluster: Cluster, node: Node) -> str:
    """The node's identity for cloud-init: the cluster, the node and its generation. A new id
    makes cloud-init provision the machine again (per-instance modules: host keys, users,
    write_files, runcmd), so it must not change with the seed's content: a token rotation or
    an unrelated edit of cluster.yaml must leave running nodes alone at their next reboot.
    To re-provision a node on purpose, bump its `generation` in cluster.yaml."""
    return f"{cluster.name}-{node.name}-{node.generation}"


def meta_data(cluster: Cluster, node: Node) -> str:
    return dump_yaml({"instance-id": instance_id(cluster, node), "local-hostname": node.name})
