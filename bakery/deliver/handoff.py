"""Delivery files (issue 5): what takes a rendered tree to running VMs.

- nodes/<node>/seed.iso: the node's NoCloud seed (ISO 9660, volume id CIDATA, Joliet and
  Rock Ridge) made by iso.py, byte for byte the same on every render;
- virtualbox/create-vms.sh: VBoxManage commands that make one VM per node from the OVA;
- proxmox/snippets/*.yaml and proxmox/deploy.sh: each node's Proxmox seed as cicustom
  snippets (`bakery deploy proxmox` makes the same seed into an ISO when it uploads it) and
  the `qm` commands that clone the template into one VM per node;
- README.md: `bakery explain` as Markdown, with a Mermaid diagram.

node_files() reads the seed files firstboot made for the node and never changes them.
Those seeds are VirtualBox's: a NAT NIC and the host-only NIC. A Proxmox clone has one NIC,
net0, whose guest name (ens18 for virtio) is not VirtualBox's, so the Proxmox seed has its
own network-config, matching that NIC by the MAC both Proxmox hand-offs set on it
(node_mac), and its own meta-data (the node's instance-id); its user-data is the node's.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..output.layout import IMAGES_SUFFIX
from ..output.writer import OutputFile
from ..plan.nodes import Action, first_boot
from ..providers import proxmox, virtualbox
from . import iso

SEED_FILES = ("user-data", "meta-data", "network-config")
VOLUME_ID = "CIDATA"
# Every date in a seed ISO (volume and file times): 2000-01-01T00:00:00Z. A fixed date makes
# two renders byte-identical, so `render --check` and the manifest's sha256 stay stable.
ISO_EPOCH = 946684800.0


# --- MAC addresses -------------------------------------------------------------------------

def stable_mac(cluster_name: str, node_name: str) -> str:
    """A MAC address derived from the cluster and node names: the same on every render and
    machine, locally administered (bit 1 of the first octet) and unicast (bit 0 clear), so it
    can never collide with a vendor-assigned address."""
    digest = hashlib.sha256(f"bakery-mac/{cluster_name}/{node_name}".encode()).digest()
    octets = bytearray(digest[:6])
    octets[0] = (octets[0] & 0b11111100) | 0b00000010
    return ":".join(f"{b:02x}" for b in octets)


def node_mac(cluster, node) -> str:
    """The MAC of the node-network NIC: cluster.yaml's, else stable_mac(). network-config
    matches the NIC by this MAC when cluster.yaml gives one and by name otherwise, so the
    NIC the hypervisor creates with this MAC always gets the node's address."""
    return node.mac or stable_mac(cluster.name, node.name)


# --- seed ISO --------------------------------------------------------------------------------

def seed_iso(files: dict[str, bytes]) -> bytes:
    """A NoCloud seed: ISO 9660 (level 3) with Joliet and Rock Ridge 1.09, volume id CIDATA,
    one file per entry at the root, every date ISO_EPOCH (deliver/iso.py)."""
    return iso.nocloud_iso(files, volume=VOLUME_ID, epoch=ISO_EPOCH)


# --- per-node facts shared by the VirtualBox and Proxmox files -----------------------------

@dataclass(frozen=True)
class NodeDelivery:
    name: str
    role: str
    action: Action
    address: str
    mac: str  # aa:bb:cc:dd:ee:ff
    cpus: int
    memory_mib: int
    vm_id: int
    seed_names: tuple[str, ...]  # the seed files that exist for this node
    secret: bool
    proxmox_node: str = ""  # the Proxmox VE host of its VM (nodes[].proxmoxNode, resolved)

    @property
    def mac_vbox(self) -> str:
        return self.mac.replace(":", "").upper()

    @property
    def mac_proxmox(self) -> str:
        return self.mac.upper()


# Snippet and seed ISO names are global on a Proxmox storage, so they carry the cluster's name,
# and must say unambiguously which cluster and node they belong to: with '-' between them,
# cluster lab's node a-b and cluster lab-a's node b would both write lab-a-b-user.yaml. The
# cluster and the node are RFC 1123 labels (the schema: [a-z0-9-]), so '_' cannot occur in
# either, and it survives Proxmox's file names: pve-storage keeps [a-zA-Z0-9_.-] of an uploaded
# file's name (PVE::Storage::normalize_content_filename) and takes any name without '/' as a
# snippet (parse_volname: ^snippets/([^/]+)$). The part ('user', 'network', 'meta', 'seed')
# holds no '-' and follows the node after the last '-'.
CLUSTER_SEPARATOR = "_"


def volume_stem(cluster, node_name: str) -> str:
    """'<cluster>_<node>': the unambiguous start of a node's file names on Proxmox storage."""
    return f"{cluster.name}{CLUSTER_SEPARATOR}{node_name}"


def snippet_name(cluster, node_name: str, part: str) -> str:
    return f"{volume_stem(cluster, node_name)}-{part}.yaml"


SNIPPET_PARTS = (("user", "user-data"), ("network", "network-config"), ("meta", "meta-data"))


def node_delivery(cluster, node_plan, seed: dict[str, OutputFile]) -> NodeDelivery:
    node = node_plan.node
    return NodeDelivery(
        name=node.name, role=node.role, action=node_plan.action, address=str(node.address),
        mac=node_mac(cluster, node), cpus=node.cpus, memory_mib=node.memory_mib, vm_id=node.vm_id,
        seed_names=tuple(seed), secret=any(f.secret for f in seed.values()), proxmox_node=node.proxmox_node,
    )


def proxmox_seed(cluster, node, seed: dict[str, OutputFile]) -> dict[str, OutputFile]:
    """The node's seed for a Proxmox clone: the node's user-data; a network-config that
    matches the clone's one NIC (net0) by the MAC deploy.sh and `bakery deploy proxmox` set
    on it (node_mac) and names it node.interface, as the rest of first boot expects (kube-vip's
    interface), with no NAT NIC (a Proxmox clone has none); meta-data to match."""
    from ..seed.metadata import meta_data
    from ..seed.network import network_config

    if "user-data" not in seed:
        return {}
    user_data = seed["user-data"]
    network = network_config(cluster, node, mac=node_mac(cluster, node), nat=False)
    meta = meta_data(cluster, node)
    common = {"kind": "proxmox", "node": node.name, "role": node.role}
    return {"user-data": user_data,
            "network-config": OutputFile("", network.encode(), **common),
            "meta-data": OutputFile("", meta.encode(), **common)}


def node_files(cluster, node_plan, seed: dict[str, OutputFile]) -> list[OutputFile]:
    """One node's delivery files, from its seed files: seed.iso, and with Proxmox the
    Proxmox seed as snippets."""
    node = node_plan.node
    out: list[OutputFile] = []
    secret = any(f.secret for f in seed.values())
    if "user-data" in seed and "meta-data" in seed:
        image = seed_iso({name: f.content for name, f in seed.items()})
        out.append(OutputFile(f"nodes/{node.name}/seed.iso", image, kind="seed", node=node.name,
                              role=node.role, secret=secret))
    if proxmox.BUILDER in cluster.image.builders:
        px_seed = proxmox_seed(cluster, node, seed)
        for part, seed_name in SNIPPET_PARTS:
            f = px_seed.get(seed_name)
            if f is not None:
                out.append(OutputFile(f"proxmox/snippets/{snippet_name(cluster, node.name, part)}", f.content,
                                      kind="proxmox", node=node.name, role=node.role, secret=f.secret))
    return out


def proxmox_seed_iso(cluster, out, node_name: str) -> bytes:
    """The node's Proxmox seed as a NoCloud ISO, made from its snippets in the rendered tree
    `out` (byte for byte the same for the same snippets), for `bakery deploy proxmox`, which
    cannot upload snippets. Made when it is uploaded, not at render time: the tree keeps one
    copy of the node's secrets, and a render does not pay for an ISO per node twice."""
    from ..errors import EnvError

    files = {}
    for part, seed_name in SNIPPET_PARTS:
        path = out / "proxmox" / "snippets" / snippet_name(cluster, node_name, part)
        if not path.is_file():
            raise EnvError(f"{path} is missing; run `bakery render` first")
        files[seed_name] = path.read_bytes()
    return seed_iso(files)


def host_only_address(cluster) -> str:
    """The host's address on the host-only network: the gateway, else the first address of
    the node network that no node uses."""
    from ..spec.derive import host_only_address as derive_address

    net = cluster.network
    address = derive_address(net.gateway, net.node_cidr, (n.address for n in cluster.nodes))
    assert address is not None, "the host-only-address check admits no cluster without one"
    return str(address)


# --- the renderer --------------------------------------------------------------------------

def cluster_files(cluster, plan, nodes: list[NodeDelivery], plans=None) -> list[OutputFile]:
    """The cluster's delivery files: create-vms.sh and destroy-vms.sh (VirtualBox), deploy.sh
    and destroy.sh (Proxmox), each for every node or the nodes named; and the README."""
    from ..templating import render_template
    from . import explain

    out: list[OutputFile] = []
    px = cluster.image.proxmox
    builders = cluster.image.builders
    node_names = [n.name for n in nodes]
    if virtualbox.BUILDER in builders:
        script = render_template(
            "deliver/create-vms.sh.j2", cluster=cluster, plan=plan, nodes=nodes, node_names=node_names,
            ova=virtualbox.ova_name(plan), images_suffix=IMAGES_SUFFIX, host_only=cluster.image.virtualbox_host_only,
            host_address=host_only_address(cluster), netmask=str(cluster.network.node_cidr.netmask),
            first_boot=first_boot(cluster),
        )
        out.append(OutputFile("virtualbox/create-vms.sh", script.encode(), kind="virtualbox",
                              executable=True))
        script = render_template("deliver/destroy-vms.sh.j2", cluster=cluster, nodes=nodes, node_names=node_names)
        out.append(OutputFile("virtualbox/destroy-vms.sh", script.encode(), kind="virtualbox", executable=True))
    if proxmox.BUILDER in builders:
        rows = []
        for n in nodes:
            names = [snippet_name(cluster, n.name, part) for part, _ in SNIPPET_PARTS]
            volumes = [f"{part}={px.snippet_storage}:snippets/{name}"
                       for (part, _), name in zip(SNIPPET_PARTS, names, strict=True)]
            rows.append((n, names, ",".join(volumes)))
        # the hosts other than the template's that hold VMs: deploy.sh checks they are in the
        # Proxmox cluster before it makes anything
        placed = [(n.name, n.proxmox_node) for n in nodes if n.proxmox_node != px.node]
        script = render_template(
            "deliver/deploy.sh.j2", cluster=cluster, plan=plan, px=px,
            cloudinit_slot=proxmox.clone_cd_slots(cluster.image.arch)[0],
            nodes=rows, node_names=node_names, first_boot=first_boot(cluster), placed=placed,
        )
        out.append(OutputFile("proxmox/deploy.sh", script.encode(), kind="proxmox", executable=True))
        script = render_template("deliver/destroy.sh.j2", cluster=cluster, px=px, nodes=rows, node_names=node_names)
        out.append(OutputFile("proxmox/destroy.sh", script.encode(), kind="proxmox", executable=True))
    out.append(OutputFile("README.md", explain.markdown(cluster, plan, plans).encode(), kind="docs"))
    return out
