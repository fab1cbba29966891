"""Packer templates for the node image (issue 3). Placeholder until implemented."""
from __future__ import annotations


def render_packer(cluster, plan) -> list:
    return []
