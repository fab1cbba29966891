"""Mirrors (spec.mirrors): the URL each download of the bake is fetched from, and containerd's
registry host files.

A mirror replaces the scheme and host of an upstream and keeps the path after it:

- `downloads` stands in for https://github.com (containerd, runc, the CNI plugins, crictl and
  their checksum files keep `/<owner>/<repo>/releases/download/<tag>/<file>`). Calico's
  manifests are served by GitHub from raw.githubusercontent.com/<owner>/<repo>/<ref>/<path>;
  github.com serves the same file at /<owner>/<repo>/raw/<ref>/<path> (a redirect to the raw
  host), so with a downloads mirror they are fetched from <mirror>/projectcalico/calico/raw/
  <tag>/manifests/<name>: one mirror of github.com serves every release file.
- `kubernetes` stands in for https://pkgs.k8s.io (the repository of a minor stays at
  /core:/stable:/v1.N/deb/, its key at .../deb/Release.key) and for https://dl.k8s.io
  (/release/vX.Y.Z/bin/linux/ARCH/NAME and its .sha256 beside it).
- `registries`: containerd reads /etc/containerd/certs.d/<host>/hosts.toml for every pull of an
  image named <host>/... (CRI and ctr alike, through the config_path every containerd config
  bakery writes sets). bakery writes `server` = the registry itself (the fallback) and one
  `[host."<mirror>"]` with capabilities pull and resolve (never push). Images keep their
  canonical names. containerd's own rules (core/remotes/docker/config/hosts.go,
  parseHostConfig; docs/hosts.md): a host URL whose path does not end in /v2 gets /v2
  appended unless `override_path = true`; docker.io's registry is registry-1.docker.io
  (ConfigureHosts); the folder of host:port may be named host:port or host_port_ (hostPaths).
  So a mirror URL whose path has a /v2/ segment before its end (a Harbor-style
  https://mirror/v2/<project>) is the API root as given: `override_path = true`; any other
  path is a prefix containerd completes with /v2.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..spec.model import Mirrors

GITHUB = "https://github.com/"
GITHUB_RAW = "https://raw.githubusercontent.com/"
PKGS_K8S = "https://pkgs.k8s.io/"
DL_K8S = "https://dl.k8s.io/"

CERTS_D = "/etc/containerd/certs.d"
# Where an image named <host>/... is pulled from when no mirror is configured
# (containerd ConfigureHosts: docker.io is served by registry-1.docker.io).
REGISTRY_SERVERS = {"docker.io": "https://registry-1.docker.io"}
MIRROR_CAPABILITIES = ("pull", "resolve")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def download_url(url: str, mirrors: Mirrors) -> str:
    """The URL to fetch an upstream release file from: through the downloads or kubernetes
    mirror when one is set and the URL is one it stands in for, else the URL itself."""
    if mirrors.downloads:
        if url.startswith(GITHUB):
            return _join(mirrors.downloads, url.removeprefix(GITHUB))
        if url.startswith(GITHUB_RAW):
            owner, repo, ref, path = url.removeprefix(GITHUB_RAW).split("/", 3)
            return _join(mirrors.downloads, f"{owner}/{repo}/raw/{ref}/{path}")
    if mirrors.kubernetes:
        for upstream in (PKGS_K8S, DL_K8S):
            if url.startswith(upstream):
                return _join(mirrors.kubernetes, url.removeprefix(upstream))
    return url


@dataclass(frozen=True)
class RegistryHosts:
    """One certs.d/<host>/hosts.toml."""

    registry: str  # the host part of image names, e.g. registry.k8s.io
    server: str  # upstream: the fallback when the mirror fails
    mirror: str
    override_path: bool

    @property
    def path(self) -> str:
        return f"{CERTS_D}/{self.registry}/hosts.toml"


def registry_server(registry: str) -> str:
    return REGISTRY_SERVERS.get(registry, f"https://{registry}")


def overrides_path(mirror: str) -> bool:
    """True when the mirror URL's path is the registry API root as given (see the module doc)."""
    segments = [s for s in urlsplit(mirror).path.split("/") if s]
    return "v2" in segments[:-1]


def registry_hosts(mirrors: Mirrors) -> list[RegistryHosts]:
    return [RegistryHosts(host, registry_server(host), mirror, overrides_path(mirror))
            for host, mirror in mirrors.registries]


def hosts_toml(h: RegistryHosts) -> dict:
    """The document of one hosts.toml (serialized by the caller)."""
    host: dict = {"capabilities": list(MIRROR_CAPABILITIES)}
    if h.override_path:
        host["override_path"] = True
    return {"server": h.server, "host": {h.mirror: host}}
