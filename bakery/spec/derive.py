"""Values derived from cluster.yaml that both the semantic checks (on the validated document)
and the model need: each rule once, so a check always judges what the model will build."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from .. import versions

DEFAULT_API_PORT = 6443  # kubeadm's default bindPort, the endpoint's port when none is given


def node_vm_id(node: Mapping[str, Any], index: int, proxmox: Mapping[str, Any]) -> int:
    """The node's Proxmox VM id: its own vmId, else image.proxmox.firstVmId plus its index."""
    return int(node.get("vmId") or proxmox["firstVmId"] + index)


def node_cpus(node: Mapping[str, Any], image: Mapping[str, Any]) -> int:
    return int(node.get("cpus") or image["cpus"])


def node_memory_mib(node: Mapping[str, Any], image: Mapping[str, Any]) -> int:
    return int(node.get("memoryMiB") or image["memoryMiB"])


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """'host:port' -> (host, port); the schema admits only that form."""
    host, _, port = endpoint.rpartition(":")
    return host, port


def host_only_address(gateway: ipaddress.IPv4Address | None, node_cidr: ipaddress.IPv4Network,
                      used: Iterable[ipaddress.IPv4Address]) -> ipaddress.IPv4Address | None:
    """The host's address on VirtualBox's host-only network: the gateway, else the first
    address of the node network that no node uses; None when every address is a node's."""
    if gateway is not None:
        return gateway
    taken = set(used)
    return next((h for h in node_cidr.hosts() if h not in taken), None)


def image_firmware(spec: Mapping[str, Any]) -> str:
    """spec.image.firmware, else the default: UEFI on arm64, the OS release's on amd64."""
    img = spec["image"]
    if img["firmware"]:
        return str(img["firmware"])
    if img["arch"] == "arm64":
        return versions.ARM64_FIRMWARE
    return versions.OS_RELEASES[spec["os"]].default_firmware
