"""Per-node cloud-init (issue 4). Placeholder until implemented."""
from __future__ import annotations


def render_nodes(cluster, bundle, plan) -> list:
    return []


def render_cluster_files(cluster, bundle) -> list:
    return []
