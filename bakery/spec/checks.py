"""Semantic checks that a JSON schema cannot express. Each has a stable ID (shown in the
message and listed in the README) and runs on schema-valid data with defaults filled in.

Every check is linear in the number of nodes: duplicates are found with dictionaries,
never by comparing all pairs.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from .. import versions
from ..errors import Diagnostic
from ..nodefacts import COMPONENT_PORTS
from ..providers import proxmox, virtualbox
from . import derive
from .checkbase import CHECKS, Ctx, check
from .durations import parse_duration
from .loader import Document

# Private and shared ranges in which a pod network belongs (RFC 1918, RFC 6598 CGNAT).
PRIVATE_V4 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]
VIRTUALBOX_NAT = ipaddress.ip_network("10.0.2.0/24")


def run_checks(doc: Document, data: dict) -> list[Diagnostic]:
    from . import (
        checks_image,  # noqa: F401  (registers the checks of the image's seed and ISO)
        checks_site,  # noqa: F401  (registers the checks of the site's settings)
    )

    ctx = Ctx(doc, data)
    out: list[Diagnostic] = []
    for _, fn in CHECKS:
        out.extend(fn(ctx))
    return out


@check("cidr-host-bits")
def _cidr_host_bits(ctx: Ctx) -> Iterator[Diagnostic]:
    for key in sorted(ctx.bad_cidr):
        text = ctx.spec["network"][key]
        fixed = ipaddress.ip_network(text, strict=False)
        yield ctx.err("cidr-host-bits", ("spec", "network", key),
                      f"spec.network.{key} {text} has host bits set", f"the network is {fixed}")


@check("cidr-overlap")
def _cidr_overlap(ctx: Ctx) -> Iterator[Diagnostic]:
    names = {"nodeCidr": "node network", "podCidr": "pod network", "serviceCidr": "service network"}
    keys = [k for k in ("nodeCidr", "podCidr", "serviceCidr") if k in ctx.nets]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if ctx.nets[a].overlaps(ctx.nets[b]):
                yield ctx.err("cidr-overlap", ("spec", "network", b),
                              f"the {names[b]} {ctx.nets[b]} overlaps the {names[a]} {ctx.nets[a]}",
                              "the node, pod and service networks must be disjoint: pick another range, "
                              "e.g. 10.244.0.0/16 for pods and 10.96.0.0/12 for services")


@check("service-cidr-size")
def _service_size(ctx: Ctx) -> Iterator[Diagnostic]:
    net = ctx.nets.get("serviceCidr")
    if net and net.prefixlen < 12:
        yield ctx.err("service-cidr-size", ("spec", "network", "serviceCidr"),
                      f"the service network {net} is larger than the API server allows (at most a /12)",
                      "use a /12 or smaller, e.g. 10.96.0.0/12")
    if net and net.num_addresses < 16:
        yield ctx.err("service-cidr-size", ("spec", "network", "serviceCidr"),
                      f"the service network {net} is too small for the cluster's services",
                      "use at least a /24, e.g. 10.96.0.0/12")


@check("pod-cidr-size")
def _pod_size(ctx: Ctx) -> Iterator[Diagnostic]:
    net = ctx.nets.get("podCidr")
    if not net:
        return
    nodes = len(ctx.spec["nodes"])
    if net.prefixlen > 24:
        yield ctx.err("pod-cidr-size", ("spec", "network", "podCidr"),
                      f"the pod network {net} is smaller than one node's /24 pod range",
                      "use a /16 or larger, e.g. 10.244.0.0/16")
    elif 2 ** (24 - net.prefixlen) < nodes:
        yield ctx.err("pod-cidr-size", ("spec", "network", "podCidr"),
                      f"the pod network {net} has room for {2 ** (24 - net.prefixlen)} nodes' /24 ranges, "
                      f"but the cluster has {nodes} nodes", "use a larger range, e.g. a /12")


@check("pod-cidr-public")
def _pod_public(ctx: Ctx) -> Iterator[Diagnostic]:
    for key in ("podCidr", "serviceCidr"):
        net = ctx.nets.get(key)
        if net and not any(net.subnet_of(p) for p in PRIVATE_V4):
            yield ctx.warn("pod-cidr-public", ("spec", "network", key),
                           f"spec.network.{key} {net} is outside the private ranges, so pods cannot reach "
                           "public hosts with those addresses",
                           "prefer a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")


@check("nat-overlap")
def _nat_overlap(ctx: Ctx) -> Iterator[Diagnostic]:
    if virtualbox.BUILDER not in ctx.spec["image"]["builders"]:
        return
    for key in ("nodeCidr", "podCidr", "serviceCidr"):
        net = ctx.nets.get(key)
        if net and net.overlaps(VIRTUALBOX_NAT):
            yield ctx.warn("nat-overlap", ("spec", "network", key),
                           f"spec.network.{key} {net} overlaps VirtualBox's NAT network {VIRTUALBOX_NAT} "
                           "(10.0.2.15 on every VM)", "choose a range that avoids 10.0.2.0/24")


def _node_net(ctx: Ctx):
    return ctx.nets.get("nodeCidr")


@check("gateway-outside-cidr")
def _gateway(ctx: Ctx) -> Iterator[Diagnostic]:
    net, gw = _node_net(ctx), ctx.spec["network"]["gateway"]
    if net and gw:
        ip = ipaddress.ip_address(gw)
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            yield ctx.err("gateway-outside-cidr", ("spec", "network", "gateway"),
                          f"the gateway {gw} is not a host address of the node network {net}",
                          f"use an address between {net.network_address + 1} and {net.broadcast_address - 1}")


def _reserved(ctx: Ctx) -> dict:
    net = _node_net(ctx)
    out = {net.network_address: "the network address", net.broadcast_address: "the broadcast address"}
    if ctx.spec["network"]["gateway"]:
        out[ipaddress.ip_address(ctx.spec["network"]["gateway"])] = "the gateway"
    return out


@check("node-address")
def _node_addresses(ctx: Ctx) -> Iterator[Diagnostic]:
    net = _node_net(ctx)
    if not net:
        return
    reserved = _reserved(ctx)
    seen: dict = {}
    for i, node in enumerate(ctx.spec["nodes"]):
        ip = ipaddress.ip_address(node["address"])
        path = ("spec", "nodes", i, "address")
        if ip not in net:
            yield ctx.err("node-address-outside-cidr", path,
                          f"node {node['name']}'s address {ip} is outside the node network {net}",
                          f"use an address between {net.network_address + 1} and {net.broadcast_address - 1}")
        elif ip in reserved:
            yield ctx.err("node-address-reserved", path,
                          f"node {node['name']}'s address {ip} is {reserved[ip]} of {net}",
                          "give the node a free host address")
        if ip in seen:
            yield ctx.err("node-address-duplicate", path,
                          f"node {node['name']} has the address {ip} of node {ctx.spec['nodes'][seen[ip]]['name']}",
                          "every node needs its own address")
        seen.setdefault(ip, i)


@check("node-name-duplicate")
def _node_names(ctx: Ctx) -> Iterator[Diagnostic]:
    seen: dict = {}
    for i, node in enumerate(ctx.spec["nodes"]):
        if node["name"] in seen:
            yield ctx.err("node-name-duplicate", ("spec", "nodes", i, "name"),
                          f"two nodes are named {node['name']} (the other is nodes[{seen[node['name']]}])",
                          "node names are host names and Kubernetes node names: make them unique")
        seen.setdefault(node["name"], i)


@check("node-mac-duplicate")
def _node_macs(ctx: Ctx) -> Iterator[Diagnostic]:
    seen: dict = {}
    for i, node in enumerate(ctx.spec["nodes"]):
        mac = (node.get("mac") or "").lower()
        if not mac:
            continue
        if mac in seen:
            yield ctx.err("node-mac-duplicate", ("spec", "nodes", i, "mac"),
                          f"node {node['name']} has the MAC {mac} of {ctx.spec['nodes'][seen[mac]]['name']}",
                          "give every NIC its own MAC")
        elif int(mac.split(":")[0], 16) & 1:
            yield ctx.err("node-mac-multicast", ("spec", "nodes", i, "mac"),
                          f"node {node['name']}'s MAC {mac} is a multicast address",
                          "the first byte must be even, e.g. 08:00:27:… (VirtualBox) or 52:54:00:… (QEMU)")
        seen.setdefault(mac, i)


@check("no-control-plane")
def _control_plane(ctx: Ctx) -> Iterator[Diagnostic]:
    if not any(n["role"] == "control-plane" for n in ctx.spec["nodes"]):
        yield ctx.err("no-control-plane", ("spec", "nodes"), "no node has role control-plane",
                      "set role: control-plane on the node that runs kubeadm init")


@check("control-plane-even")
def _even(ctx: Ctx) -> Iterator[Diagnostic]:
    cps = [i for i, n in enumerate(ctx.spec["nodes"]) if n["role"] == "control-plane"]
    if len(cps) >= 2 and len(cps) % 2 == 0:
        yield ctx.warn("control-plane-even", ("spec", "nodes", cps[-1], "role"),
                       f"{len(cps)} control-plane nodes: etcd needs a majority, so an even number tolerates "
                       f"no more failures than {len(cps) - 1}", "use an odd number (1, 3 or 5)")


RESERVED_PORTS = COMPONENT_PORTS
# An RFC 1123 subdomain, matched to the true end with fullmatch (a `$` would also match before a
# final newline).
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")


@check("endpoint")
def _endpoint(ctx: Ctx) -> Iterator[Diagnostic]:
    cp = ctx.spec["controlPlane"]
    net = _node_net(ctx)
    path = ("spec", "controlPlane", "endpoint")
    if cp["endpoint"]:
        host, port = derive.split_endpoint(cp["endpoint"])
        if not 1 <= int(port) <= 65535:
            yield ctx.err("endpoint-port", path, f"port {port} of the endpoint is not a TCP port",
                          f"use {derive.DEFAULT_API_PORT}")
        elif int(port) in RESERVED_PORTS:
            yield ctx.err("endpoint-port", path,
                          f"port {port} is {RESERVED_PORTS[int(port)]}'s on every control-plane node; the API "
                          "server cannot listen there too", f"use {derive.DEFAULT_API_PORT}")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if not DNS_SUBDOMAIN.fullmatch(host):
                yield ctx.err("endpoint-dns", path,
                              f"the endpoint host {host} is not a lower-case DNS name (RFC 1123), which kubeadm "
                              "requires of controlPlaneEndpoint and certificate names", "write it in lower case")
                return
            yield ctx.warn("endpoint-dns", path,
                           f"the endpoint host {host} is a name; bakery cannot check that it resolves to a "
                           "control-plane node or the VIP", "make sure every node resolves it")
            return
        cps = {n["address"] for n in ctx.spec["nodes"] if n["role"] == "control-plane"}
        if str(ip) in cps or (cp["vip"] and str(ip) == cp["vip"]):
            return
        workers = {n["address"]: n["name"] for n in ctx.spec["nodes"] if n["role"] == "worker"}
        if str(ip) in workers:
            yield ctx.err("endpoint-host", path,
                          f"the endpoint {cp['endpoint']} points at worker {workers[str(ip)]}, "
                          "which runs no API server",
                          "use a control-plane node's address or set controlPlane.vip")
        elif net and ip not in net:
            yield ctx.err("endpoint-host", path,
                          f"the endpoint host {ip} is outside the node network {net}",
                          "use a control-plane node's address or a VIP inside nodeCidr")
        else:
            yield ctx.err("endpoint-host", path,
                          f"the endpoint host {ip} is neither a control-plane node's address nor controlPlane.vip",
                          f"set controlPlane.vip: {ip} to make it a kube-vip address, or use a control-plane address")


@check("join-self")
def _join_self(ctx: Ctx) -> Iterator[Diagnostic]:
    """spec.bootstrap.initialized: every control-plane node joins the running cluster through
    the endpoint. A node whose endpoint is its own address would join itself; the only
    control-plane node would join a cluster with no other API server or etcd member."""
    if not ctx.spec["bootstrap"]["initialized"]:
        return
    path = ("spec", "bootstrap", "initialized")
    cps = [n for n in ctx.spec["nodes"] if n["role"] == "control-plane"]
    if len(cps) == 1:
        yield ctx.err("join-self", path,
                      f"{cps[0]['name']} is the only control-plane node: re-created, its seed would join a cluster "
                      "whose only API server and etcd member it was, i.e. itself",
                      "a sole control-plane node comes back only from an etcd backup (kubeadm init with the restored "
                      "data, which bakery does not do); to add nodes to the running cluster, leave initialized false")
        return
    cp = ctx.spec["controlPlane"]
    host = derive.split_endpoint(cp["endpoint"])[0] if cp["endpoint"] else (cp["vip"] or cps[0]["address"])
    for n in cps:
        if n["address"] == host:
            yield ctx.err("join-self", path,
                          f"the endpoint {host} is {n['name']}'s own address: re-created, {n['name']} would join the "
                          "cluster through itself, where no API server runs yet",
                          "give the cluster a virtual IP (spec.controlPlane.vip, kube-vip) or a load balancer as the "
                          "endpoint; to add nodes without re-creating control-plane nodes, leave initialized false")


@check("vip")
def _vip(ctx: Ctx) -> Iterator[Diagnostic]:
    vip = ctx.spec["controlPlane"]["vip"]
    net = _node_net(ctx)
    if not vip or not net:
        return
    path = ("spec", "controlPlane", "vip")
    ip = ipaddress.ip_address(vip)
    if ip not in net:
        yield ctx.err("vip-outside-cidr", path, f"the VIP {ip} is outside the node network {net}",
                      "kube-vip announces it by ARP on the node network: pick a free address inside it")
        return
    reserved = _reserved(ctx)
    if ip in reserved:
        yield ctx.err("vip-reserved", path, f"the VIP {ip} is {reserved[ip]} of {net}", "pick a free host address")
    for node in ctx.spec["nodes"]:
        if node["address"] == vip:
            yield ctx.err("vip-node-address", path, f"the VIP {ip} is node {node['name']}'s address",
                          "the VIP must be an address that no node uses")
            break
    # A VIP with a single control-plane node is allowed: it lets a lab add control-plane
    # nodes later without changing the endpoint baked into every kubeconfig and certificate.


@check("kubernetes-version")
def _k8s_version(ctx: Ctx) -> Iterator[Diagnostic]:
    version = ctx.spec["kubernetes"]["version"]
    if versions.kubernetes_minor(version) is None:
        yield ctx.err("kubernetes-version", ("spec", "kubernetes", "version"),
                      f"Kubernetes {version} is outside bakery's supported range "
                      f"{versions.SUPPORTED_MINORS[0]}-{versions.SUPPORTED_MINORS[-1]}",
                      f"use e.g. {versions.KUBERNETES[versions.SUPPORTED_MINORS[-1]].newest_patch}")


@check("cni-choice")
def _cni_choice(ctx: Ctx) -> Iterator[Diagnostic]:
    given = list(ctx.spec["cni"])
    if len(given) > 1:
        yield ctx.err("cni-choice", ("spec", "cni", given[1]),
                      f"spec.cni names {' and '.join(given)}: a cluster has one pod network plugin",
                      f"keep one of {', '.join(given)}")


@check("calico-version")
def _calico(ctx: Ctx) -> Iterator[Diagnostic]:
    if "calico" not in ctx.spec["cni"]:
        return
    k8s = versions.kubernetes_minor(ctx.spec["kubernetes"]["version"])
    version = ctx.spec["cni"]["calico"]["version"]
    path = ("spec", "cni", "calico", "version")
    if version not in versions.CALICO:
        yield ctx.err("calico-version", path, f"Calico {version} is not in bakery's catalog",
                      "known releases: " + ", ".join(versions.CALICO))
    elif k8s and not versions.CALICO[version].supports(k8s.minor):
        good = versions.calico_versions_for(k8s.minor)
        yield ctx.err("calico-version", path, f"Calico {version} is not tested with Kubernetes {k8s.minor}",
                      ("use " + " or ".join(good)) if good else "no Calico in the catalog supports this minor")


def _catalog_version(ctx: Ctx, name: str, title: str, catalog: dict) -> Iterator[Diagnostic]:
    """A plugin's version: in bakery's catalog, and supported with the cluster's Kubernetes minor."""
    if name not in ctx.spec["cni"]:
        return
    k8s = versions.kubernetes_minor(ctx.spec["kubernetes"]["version"])
    version = ctx.spec["cni"][name]["version"]
    path = ("spec", "cni", name, "version")
    check_id = f"{name}-version"
    if version not in catalog:
        yield ctx.err(check_id, path, f"{title} {version} is not in bakery's catalog",
                      "known releases: " + ", ".join(catalog))
    elif k8s and not catalog[version].supports(k8s.minor):
        good = versions.cni_versions_for(catalog, k8s.minor)
        yield ctx.err(check_id, path, f"{title} {version} is not supported with Kubernetes {k8s.minor}",
                      ("use " + " or ".join(good)) if good else f"no {title} in the catalog supports this minor")


@check("cilium-version")
def _cilium(ctx: Ctx) -> Iterator[Diagnostic]:
    yield from _catalog_version(ctx, "cilium", "Cilium", versions.CILIUM)


@check("flannel-version")
def _flannel(ctx: Ctx) -> Iterator[Diagnostic]:
    yield from _catalog_version(ctx, "flannel", "flannel", versions.FLANNEL)


@check("containerd-version")
def _containerd(ctx: Ctx) -> Iterator[Diagnostic]:
    k8s = versions.kubernetes_minor(ctx.spec["kubernetes"]["version"])
    version = ctx.spec["containerd"]["version"]
    if k8s and not versions.containerd_recommended(k8s, version):
        yield ctx.err("containerd-version", ("spec", "containerd", "version"),
                      f"containerd {version} is not recommended for Kubernetes {k8s.minor}",
                      f"use {versions.describe_containerd(k8s)}")


@check("token-ttl-never")
def _token_ttl(ctx: Ctx) -> Iterator[Diagnostic]:
    text = ctx.spec["bootstrap"]["tokenTTL"]
    path = ("spec", "bootstrap", "tokenTTL")
    if text == "":
        yield ctx.err("token-ttl-empty", path, "tokenTTL is empty", "use a duration such as 24h ('0' for never)")
    elif parse_duration(text) == 0:
        yield ctx.warn("token-ttl-never", path,
                       "a bootstrap token that never expires lets anyone who reads a worker's user-data join "
                       "nodes forever", "use a TTL such as 24h and `bakery render --rotate-token` later")
    elif parse_duration(text) < 600:
        yield ctx.err("token-ttl-short", path,
                      f"tokenTTL {text} expires before the nodes can boot and join (it counts from kubeadm init)",
                      "use at least 10m; 24h suits a lab")


# kubelet accepts node labels under kubernetes.io / k8s.io only from this list
# (k8s.io/kubelet/pkg/apis well_known_labels.go, the NodeRestriction admission plugin).
KUBELET_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}
KUBELET_LABEL_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")


@check("node-label-restricted")
def _labels(ctx: Ctx) -> Iterator[Diagnostic]:
    for i, node in enumerate(ctx.spec["nodes"]):
        for key in node.get("labels") or {}:
            prefix = key.split("/", 1)[0] if "/" in key else ""
            restricted = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
            if restricted and key not in KUBELET_LABELS and not key.startswith(KUBELET_LABEL_PREFIXES):
                yield ctx.err("node-label-restricted", ("spec", "nodes", i, "labels", key),
                              f"node {node['name']}'s label {key} is in a namespace the kubelet may not set "
                              "on itself, so it would refuse to start",
                              "use your own prefix (example.com/role), or label the node with kubectl after it "
                              "joined (node-role.kubernetes.io/* labels are set that way)", key=True)


@check("no-default-route")
def _default_route(ctx: Ctx) -> Iterator[Diagnostic]:
    net = ctx.spec["network"]
    if net["gateway"]:
        return
    if net["natInterface"] is None:
        yield ctx.err("no-default-route", ("spec", "network"),
                      "with natInterface: null and no gateway, the nodes have no default route: the host "
                      "cannot reach service IPs (kube-proxy needs a route to 10.96.0.1 and friends)",
                      "set network.gateway, or keep a NAT interface")
    elif proxmox.BUILDER in ctx.spec["image"]["builders"]:
        # The Proxmox seed configures the clone's one NIC only (deliver.handoff.proxmox_seed): the
        # NAT NIC is VirtualBox's.
        yield ctx.err("no-default-route", ("spec", "network"),
                      "with no gateway, the Proxmox VMs have no default route: a Proxmox clone has one NIC, "
                      "the node network's, and no NAT NIC; the host cannot reach service IPs",
                      "set network.gateway (the Proxmox bridge's router)")


@check("interface-clash")
def _interfaces(ctx: Ctx) -> Iterator[Diagnostic]:
    nat = ctx.spec["network"]["natInterface"]
    if nat is None:
        return
    if ctx.spec["network"]["nodeInterface"] == nat:
        yield ctx.err("interface-clash", ("spec", "network", "nodeInterface"),
                      f"nodeInterface and natInterface are both {nat}",
                      "the node network and the NAT network need two NICs (enp0s8 and enp0s3 in VirtualBox)")
    for i, node in enumerate(ctx.spec["nodes"]):
        if node.get("interface") == nat:
            yield ctx.err("interface-clash", ("spec", "nodes", i, "interface"),
                          f"node {node['name']}'s interface is the NAT interface {nat}",
                          "give the node-network NIC its own name")


@check("nameserver-in-cluster-network")
def _nameservers(ctx: Ctx) -> Iterator[Diagnostic]:
    for i, ns in enumerate(ctx.spec["network"]["nameservers"]):
        ip = ipaddress.ip_address(ns)
        for key, owner in (("podCidr", "pod"), ("serviceCidr", "service")):
            net = ctx.nets.get(key)
            if net and ip in net:
                yield ctx.err("nameserver-in-cluster-network", ("spec", "network", "nameservers", i),
                              f"nameserver {ip} is inside the {owner} network {net}: CoreDNS forwards to the "
                              "node's nameservers, and would loop to itself",
                              "use a DNS server on the node network or beyond it")


@check("control-plane-size")
def _cp_size(ctx: Ctx) -> Iterator[Diagnostic]:
    img = ctx.spec["image"]
    for i, node in enumerate(ctx.spec["nodes"]):
        if node["role"] != "control-plane":
            continue
        cpus, mem = derive.node_cpus(node, img), derive.node_memory_mib(node, img)
        if cpus < 2 or mem < 1700:
            path = ("spec", "nodes", i, "cpus" if cpus < 2 and node.get("cpus") else
                    "memoryMiB" if node.get("memoryMiB") else "name")
            yield ctx.err("control-plane-size", path,
                          f"control-plane node {node['name']} has {cpus} vCPU and {mem} MiB; kubeadm's preflight "
                          "wants at least 2 vCPUs and 1700 MiB", "give it cpus: 2 and memoryMiB: 2048 or more")


# The largest Proxmox VM id (pve-common's 'pve-vmid' standard option: minimum 100, maximum
# 999_999_999); the schema bounds each id the file gives, this check the ones that follow firstVmId.
PROXMOX_MAX_VMID = 999_999_999


@check("vmid-duplicate", "vmid-range")
def _vmids(ctx: Ctx) -> Iterator[Diagnostic]:
    if proxmox.BUILDER not in ctx.spec["image"]["builders"]:
        return
    px = ctx.spec["image"]["proxmox"]
    seen = {px["templateVmId"]: "the template"}
    for i, node in enumerate(ctx.spec["nodes"]):
        vmid = derive.node_vm_id(node, i, px)
        if vmid > PROXMOX_MAX_VMID:
            yield ctx.err("vmid-range", ("spec", "nodes", i, "name"),
                          f"node {node['name']} would get Proxmox VM id {vmid}, above Proxmox's largest, "
                          f"{PROXMOX_MAX_VMID:,}", "lower image.proxmox.firstVmId, or set this node's vmId")
            continue
        if vmid in seen:
            yield ctx.err("vmid-duplicate", ("spec", "nodes", i, "vmId" if node.get("vmId") else "name"),
                          f"node {node['name']} would get Proxmox VM id {vmid}, already {seen[vmid]}'s",
                          "set distinct vmId values, or move image.proxmox.firstVmId clear of templateVmId")
        seen.setdefault(vmid, f"node {node['name']}")


@check("host-only-address")
def _host_only(ctx: Ctx) -> Iterator[Diagnostic]:
    net = _node_net(ctx)
    if not net or virtualbox.BUILDER not in ctx.spec["image"]["builders"] or ctx.spec["network"]["gateway"]:
        return
    used = [ipaddress.IPv4Address(n["address"]) for n in ctx.spec["nodes"]]
    if derive.host_only_address(None, net, used) is None:
        yield ctx.err("host-only-address", ("spec", "network", "nodeCidr"),
                      f"every host address of {net} is a node's: VirtualBox's host-only interface needs one too",
                      "set network.gateway to the host's address, or widen nodeCidr")


# Both durations reach kubeadm's configuration as Go durations (time.ParseDuration), which hold
# at most 2^63 - 1 nanoseconds: 2562047h47m16.854775807s; beyond that kubeadm refuses the file.
GO_MAX_DURATION_SECONDS = (2**63 - 1) // 10**9


@check("duration", "duration-range")
def _durations(ctx: Ctx) -> Iterator[Diagnostic]:
    for key in ("tokenTTL", "joinTimeout"):
        if parse_duration(ctx.spec["bootstrap"][key]) > GO_MAX_DURATION_SECONDS:
            yield ctx.err("duration-range", ("spec", "bootstrap", key),
                          f"{key} {ctx.spec['bootstrap'][key]} is longer than a Go duration can be (about 292 years), "
                          "so kubeadm would refuse its configuration", "use a duration such as 24h ('0' for never)")
            return
    if parse_duration(ctx.spec["bootstrap"]["joinTimeout"]) < 30:
        yield ctx.err("join-timeout", ("spec", "bootstrap", "joinTimeout"),
                      f"joinTimeout {ctx.spec['bootstrap']['joinTimeout']} is too short for a node to join",
                      "use at least 30s; 15m suits VMs that boot together")
