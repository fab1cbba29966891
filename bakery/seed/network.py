"""The node's network-config (version 2)."""
from __future__ import annotations

from .. import versions
from ..spec.model import Cluster, Node
from ..templating import dump_yaml


def _renders_to_ifupdown(cluster: Cluster) -> bool:
    return versions.OS_RELEASES[cluster.os].family == "debian"


def network_config(cluster: Cluster, node: Node, *, mac: str | None = None, nat: bool = True) -> str:
    """The node's network-config (v2). ``mac``: match the node-network NIC by this MAC (and
    name it node.interface) rather than node.mac; ``nat``: whether the VM has the NAT NIC.
    The seed in nodes/<node>/ is VirtualBox's (NAT NIC + host-only NIC); the Proxmox
    hand-off asks for its own VM's single NIC (deliver.handoff.proxmox_seed)."""
    net = cluster.network
    nat_interface = net.nat_interface if nat else None
    mac = mac or node.mac
    ethernets: dict = {}
    if nat_interface is not None and nat_interface != node.interface:
        # The NAT NIC keeps DHCP for egress (10.0.2.15 in VirtualBox).
        ethernets[nat_interface] = {"match": {"name": nat_interface}, "dhcp4": True}
    nic: dict = {}
    if mac:
        nic["match"] = {"macaddress": mac}
        nic["set-name"] = node.interface
    else:
        nic["match"] = {"name": node.interface}
    nic["dhcp4"] = False
    nic["addresses"] = [f"{node.address}/{net.node_cidr.prefixlen}"]
    if net.gateway is not None and nat_interface is None and _renders_to_ifupdown(cluster):
        # Debian's cloud-init writes ifupdown files: a `routes` entry becomes `post-up route
        # add` (net-tools, not in the image), while gateway4 becomes ifupdown's own `gateway`
        # line. With no NAT NIC this is the only default route, so no metric is needed.
        nic["gateway4"] = str(net.gateway)
    elif net.gateway is not None:
        route: dict[str, object] = {"to": "0.0.0.0/0", "via": str(net.gateway)}
        if nat_interface is not None:
            # Egress stays on the NAT NIC (its DHCP route has metric 100); the node
            # network's gateway is the fallback.
            route["metric"] = 200
        nic["routes"] = [route]
    if net.nameservers:
        nic["nameservers"] = {"addresses": list(net.nameservers)}
    ethernets[node.interface] = nic
    return dump_yaml({"network": {"version": 2, "ethernets": ethernets}})
