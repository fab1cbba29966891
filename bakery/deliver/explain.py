"""`bakery explain`: what a cluster.yaml describes, in words a person checks by eye.

The three network layers with their CIDRs and owners, one line per node (role, address,
what its first boot runs) and the control-plane endpoint. The same facts go into
outputs/<cluster>/README.md with a Mermaid diagram (rendered by code hosts).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import cni
from ..plan.nodes import Action, first_boot


@dataclass(frozen=True)
class Layer:
    name: str
    cidr: str
    owner: str
    detail: str


@dataclass(frozen=True)
class NodeLine:
    name: str
    role: str
    address: str
    action: Action
    first_boot: str


@dataclass(frozen=True)
class Explanation:
    cluster: str
    kubernetes_version: str
    os: str
    layers: tuple[Layer, ...]
    endpoint: str
    endpoint_detail: str
    nodes: tuple[NodeLine, ...]


def describe(cluster, plans=None) -> Explanation:
    """The explanation of a cluster; plans: its node plans when the caller has them already
    (a render computes them once), else they are computed here."""
    from ..plan import node_plans

    net = cluster.network
    gw = f", gateway {net.gateway}" if net.gateway else ""
    svc = net.service_cidr
    layers = (
        Layer("node network", str(net.node_cidr), "the OS",
              f"static addresses from cloud-init's network-config on {net.node_interface}{gw}"),
        Layer("pod network", str(net.pod_cidr), cni.title(cluster.cni), cni.describe(cluster)),
        Layer("service network", str(svc),
              (f"{cni.title(cluster.cni)} (kube-proxy replacement)"
               if cni.plugin(cluster.cni).replaces_kube_proxy(cluster.cni) else "kube-proxy"),
              f"ClusterIPs = kubeadm serviceSubnet; API {svc[1]}, DNS {svc[10]}"),
    )
    cp = cluster.control_plane
    by_address = {str(n.address): n.name for n in cluster.nodes}
    if cp.vip is not None:
        detail = f"kube-vip {cp.kube_vip_version} holds the VIP on one control-plane node at a time"
    elif cp.endpoint_host in by_address:
        detail = f"the API server of {by_address[cp.endpoint_host]}"
    else:
        detail = "an address you provide (load balancer or DNS name) in front of the API servers"
    nodes = []
    words = first_boot(cluster)
    for p in plans if plans is not None else node_plans(cluster):
        text = words[p.action]
        if p.action != Action.INIT:
            text += f" via {cp.endpoint}"
        nodes.append(NodeLine(p.node.name, p.node.role, str(p.node.address), p.action, text))
    firmware = {"bios": "BIOS", "uefi": "UEFI"}[cluster.image.firmware]
    platform = f"{cluster.os} ({cluster.image.arch}, {firmware})"
    return Explanation(cluster.name, cluster.kubernetes_version, platform, layers,
                       cp.endpoint, detail, tuple(nodes))


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip() for r in rows]


def text(cluster) -> str:
    e = describe(cluster)
    lines = [f"cluster {e.cluster}: Kubernetes {e.kubernetes_version} on {e.os}, "
             f"{len(e.nodes)} node{'s' if len(e.nodes) != 1 else ''}", "", "networks"]
    lines += _table([(ly.name, ly.cidr, f"owner: {ly.owner}", f"({ly.detail})") for ly in e.layers])
    lines += ["", f"control-plane endpoint: {e.endpoint} ({e.endpoint_detail})", "", "nodes"]
    lines += _table([(n.name, n.role, n.address, f"first boot: {n.first_boot}") for n in e.nodes])
    return "\n".join(lines) + "\n"


def mermaid(cluster, e: Explanation | None = None) -> str:
    """A flowchart of the topology. Node names are RFC 1123 labels and the rest are
    addresses and CIDRs, so no label needs escaping; ids are n0, n1, ... (never a keyword)."""
    e = e or describe(cluster)
    node_net, pod_net, svc_net = e.layers
    ids = {n.name: f"n{i}" for i, n in enumerate(e.nodes)}
    words = first_boot(cluster)
    out = ["flowchart TB",
           f'  subgraph nodenet["{node_net.name} {node_net.cidr} (owner: {node_net.owner})"]']
    for n in e.nodes:
        out.append(f'    {ids[n.name]}["{n.name}<br/>{n.role}<br/>{n.address}<br/>{words[n.action]}"]')
    out.append("  end")
    out.append(f'  ep(["control-plane endpoint<br/>{e.endpoint}"])')
    for n in e.nodes:
        if n.role == "control-plane":
            out.append(f"  ep --> {ids[n.name]}")
    for n in e.nodes:
        if n.action != Action.INIT:
            out.append(f'  {ids[n.name]} -. "kubeadm join" .-> ep')
    out.append(f'  pods["{pod_net.name} {pod_net.cidr}<br/>owner: {pod_net.owner}"]')
    out.append(f'  svcs["{svc_net.name} {svc_net.cidr}<br/>owner: {svc_net.owner}"]')
    out.append("  nodenet --- pods")
    out.append("  nodenet --- svcs")
    return "\n".join(out) + "\n"


def markdown(cluster, plan=None, plans=None) -> str:
    """README.md of the output tree; plan and plans: the image plan and the node plans when
    the caller has them (a render passes its own), else they are computed here."""
    from ..output.layout import images_folder_name
    from ..plan import image_plan
    from ..providers import proxmox, virtualbox
    from ..templating import render_template

    plan = plan or image_plan(cluster)
    e = describe(cluster, plans)
    return render_template("deliver/README.md.j2", e=e, cluster=cluster, plan=plan,
                           diagram=mermaid(cluster, e), px=cluster.image.proxmox,
                           placed=[n for n in cluster.nodes if n.proxmox_node != cluster.image.proxmox.node],
                           virtualbox=virtualbox.BUILDER, proxmox=proxmox.BUILDER,
                           ova=f"../{images_folder_name(cluster.name)}/{virtualbox.ova_name(plan)}")
