"""Delivery files (issue 5): seed ISOs, VirtualBox and Proxmox hand-off. Placeholder."""
from __future__ import annotations


def render_delivery(cluster, plan, files) -> list:
    """Files derived from the rendered tree (e.g. nodes/<node>/seed.iso from the seed files)."""
    return []
