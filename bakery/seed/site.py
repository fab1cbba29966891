"""The site's run-time settings on every node: the proxy (spec.proxy) for containerd, the kubelet
and apt, and time sync (spec.ntp).

The proxy reaches containerd and the kubelet through systemd drop-ins: one ``Environment=``
word per variable, as systemd reads it (src/core/load-fragment.c, config_parse_environ: each
word is unquoted with C escapes, EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE, then its ``%`` specifiers
are expanded; ``$`` is not special). apt reads its own configuration
(apt.conf(5): ``Acquire::http::Proxy "URL";``, and ``Acquire::http::Proxy::HOST "DIRECT";``
for a host that bypasses it; apt has no NO_PROXY list).

containerd may have started before cloud-init wrote its drop-in: the first-boot script reloads
systemd and restarts containerd before anything pulls (RUNTIME_PROXY in its values). The
kubelet is (re)started by kubeadm after that reload.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from .. import versions
from ..plan.proxy import bypasses, environment, runtime_no_proxy
from ..spec.model import Cluster

# The units that get the proxy, and where their drop-in goes.
PROXY_UNITS = ("containerd.service", "kubelet.service")
DROP_IN_NAME = "50-bakery-proxy.conf"
APT_PROXY = "/etc/apt/apt.conf.d/90bakery-proxy"


def drop_in_path(unit: str) -> str:
    return f"/etc/systemd/system/{unit}.d/{DROP_IN_NAME}"


def systemd_word(text: str) -> str:
    """One word of a systemd setting that unquotes to exactly `text`: double-quoted, with
    backslash and double quote C-escaped and % doubled (the specifier escape)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("a control character cannot be written into a systemd unit")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def proxy_drop_in(cluster: Cluster) -> str:
    assert cluster.proxy is not None
    lines = ["# bakery: the site's proxy (spec.proxy) for this service; NO_PROXY keeps the node, the",
             "# pod and service ranges, the cluster's names and the control-plane endpoint direct.",
             "[Service]"]
    lines += [f"Environment={systemd_word(f'{name}={value}')}"
              for name, value in environment(cluster.proxy, runtime_no_proxy(cluster))]
    return "\n".join(lines) + "\n"


def _apt_string(text: str) -> str:
    # apt.conf strings have no escapes: a double quote or a line break cannot be written
    if any(c in text for c in '"\n\r') or any(ord(c) < 0x20 for c in text):
        raise ValueError("a double quote or control character cannot be written into apt.conf")
    return f'"{text}"'


def apt_proxy(cluster: Cluster) -> str:
    """apt.conf lines: the proxy per scheme, and DIRECT for the site's apt and Kubernetes
    mirrors when NO_PROXY covers them (apt itself ignores NO_PROXY)."""
    proxy = cluster.proxy
    assert proxy is not None
    no_proxy = runtime_no_proxy(cluster)
    lines = ["// bakery: the site's proxy (spec.proxy) for apt on this node."]
    for scheme, url in (("http", proxy.http), ("https", proxy.https)):
        if url:
            lines.append(f"Acquire::{scheme}::Proxy {_apt_string(url)};")
    hosts = []
    for mirror in (cluster.mirrors.apt, cluster.mirrors.kubernetes):
        if mirror:
            parts = urlsplit(mirror)
            if parts.hostname and bypasses(parts.hostname, no_proxy) and (parts.scheme, parts.hostname) not in hosts:
                hosts.append((parts.scheme, parts.hostname))
    for scheme, host in hosts:
        lines.append(f"Acquire::{scheme}::Proxy::{host} \"DIRECT\";")
    return "\n".join(lines) + "\n"


def proxy_files(cluster: Cluster) -> list[tuple[str, str, str]]:
    """(path, content, mode) of the run-time proxy's files; none without spec.proxy. 0600:
    the URL may carry the proxy's credentials, and only systemd and apt (root) read them."""
    if cluster.proxy is None:
        return []
    drop_in = proxy_drop_in(cluster)
    return [*((drop_in_path(unit), drop_in, "0600") for unit in PROXY_UNITS),
            (APT_PROXY, apt_proxy(cluster), "0600")]


def commands_environment(cluster: Cluster) -> list[str]:
    """NAME=value words for `env`: the site's commands at first boot see the proxy too."""
    if cluster.proxy is None:
        return []
    return [f"{name}={value}" for name, value in environment(cluster.proxy, runtime_no_proxy(cluster))]


def ntp(cluster: Cluster) -> dict | None:
    """cloud-init's ntp module (cc_ntp): the release's time daemon, which the image has
    (systemd-timesyncd, or chrony on Ubuntu 26.04), with the site's servers; None without
    spec.ntp (the image's defaults stay)."""
    if not cluster.ntp_servers:
        return None
    client = versions.OS_RELEASES[cluster.os].time_daemon.ntp_client
    return {"enabled": True, "ntp_client": client, "servers": list(cluster.ntp_servers)}

