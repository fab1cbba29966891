"""The proxy environment of the bake and of the nodes (spec.proxy): which variables, and which
destinations bypass the proxy.

The variables are set in both spellings: curl reads only the lower-case http_proxy (and takes
HTTPS_PROXY/https_proxy alike), Go programs (containerd, the kubelet, kubeadm, kubectl) read
either, preferring upper case (golang.org/x/net/http/httpproxy FromEnvironment). Go's NO_PROXY
matches a host, its subdomains (example.com, or .example.com for subdomains only), an IP
address or a CIDR; curl before 7.86 (Ubuntu 22.04's 7.81) and apt (its http method's
no_proxy: domain suffixes only) match no CIDR, so the bake's list also names each mirror given
by an address that a CIDR entry covers."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..spec.model import Cluster, Mirrors, Proxy

# Always direct: the node itself.
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def bake_no_proxy(proxy: Proxy, mirrors: Mirrors | None = None) -> tuple[str, ...]:
    """The bake talks to nothing of the cluster: the loopback and the user's entries, then the
    address of each mirror that apt or curl fetches from when a CIDR entry covers it."""
    covered = []
    for url in (mirrors.apt, mirrors.kubernetes, mirrors.downloads) if mirrors else ():
        host = urlsplit(url).hostname if url else None
        try:
            ip = ipaddress.ip_address(host or "")
        except ValueError:
            continue
        if bypasses(str(ip), proxy.no_proxy):
            covered.append(str(ip))
    return _unique((*LOOPBACK, *proxy.no_proxy, *covered))


def bypasses(host: str, no_proxy: tuple[str, ...]) -> bool:
    """Whether Go's NO_PROXY rules (golang.org/x/net/http/httpproxy) send `host` direct: an
    IP address in a CIDR entry or equal to an address entry, a name equal to an entry or below
    it (``example.com`` covers its subdomains, ``.example.com`` only them), ``*`` everything."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy:
        e = entry.lower()
        if e == "*":
            return True
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(e, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if e.startswith("."):
            if host.endswith(e):
                return True
        elif host == e or host.endswith("." + e):
            return True
    return False


def runtime_no_proxy(cluster: Cluster) -> tuple[str, ...]:
    """What a node reaches without the proxy: the loopback, the node, pod and service ranges,
    the cluster domain and Service names, the control-plane endpoint, then the user's entries."""
    assert cluster.proxy is not None
    net = cluster.network
    return _unique((*LOOPBACK, str(net.node_cidr), str(net.pod_cidr), str(net.service_cidr),
                    ".svc", net.dns_domain, cluster.control_plane.endpoint_host, *cluster.proxy.no_proxy))


def environment(proxy: Proxy, no_proxy: tuple[str, ...]) -> list[tuple[str, str]]:
    """(NAME, value) pairs, both spellings of each variable, the unset ones left out."""
    out: list[tuple[str, str]] = []
    for name, value in (("http_proxy", proxy.http), ("https_proxy", proxy.https),
                        ("no_proxy", ",".join(no_proxy))):
        if value:
            out += [(name.upper(), value), (name, value)]
    return out


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
