"""The image plan: everything that decides the bytes of the node image, computed once from
the model, and what the node check expects of that image."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field, fields

from .. import __version__, cni, nodefacts, versions
from ..nodefacts import HELM_BINARY, KUBERNETES_BINARIES, RUNTIME_BINARIES, kubernetes_binary
from ..spec.model import Cluster, Mirrors
from . import mirrors as mirrormod
from .paths import CONTAINERD_SOCKET, cni_dir

# The site's CA certificates in the image: update-ca-certificates reads *.crt under this folder
# (ca-certificates' update-ca-certificates(8)) and appends each to the system bundle.
SITE_CA_DIR = "/usr/local/share/ca-certificates"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_PEM_BODY = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides the bytes of the node image (and nothing node-specific)."""

    os: str
    arch: str  # versions.ARCHES
    firmware: str  # bios | uefi
    kubernetes_version: str
    deb_version: str  # e.g. 1.36.3-1.1
    package_source: str
    pkgs_repo: str
    containerd_version: str
    containerd_config_version: int
    runc_version: str
    cni_plugins_version: str
    crictl_version: str
    pause_image: str
    images: tuple[str, ...]  # every image first boot needs (besides kubeadm's own list)
    cni: str  # the pod network plugin (its key under spec.cni)
    cni_version: str
    cni_assets: tuple[tuple[str, str], ...]  # (file name, URL): stored in paths.cni_dir(cni)
    kube_vip_image: str | None
    # What else decides the bytes of the image (issue 3): the installer ISO, the disk, the
    # build user the installer creates (removed again, see image.steps.REMOVE_USER_SCRIPT), and the bakery release whose
    # scripts bake it. Build-VM sizing (cpus, memory) is not an input: it changes no byte.
    iso_urls: tuple[str, ...] = ()  # one file, tried at each location in order
    iso_checksum: str = ""
    disk_size_mib: int = 0
    build_user: str = ""
    bakery_version: str = ""
    # The site (issue 18). apt_mirror: the installer writes it into the image's apt sources;
    # pkgs_repo above is the kubernetes mirror's when one is set (kubernetes.list names it).
    apt_mirror: str | None = None
    ca_certificates: tuple[str, ...] = ()  # PEM, each with one trailing newline
    registry_mirrors: tuple[tuple[str, str], ...] = ()  # (host, mirror): certs.d/<host>/hosts.toml
    extra_packages: tuple[str, ...] = ()  # "name" or "name=version" (pinned and held)
    site_files: tuple[tuple[str, str, str], ...] = ()  # (path, content, mode)
    site_commands: tuple[str, ...] = ()
    # Where the bake downloads from: the same files (each verified against its published
    # checksum), so no byte of the image changes with them: not in the fingerprint. The
    # proxy is not on the plan at all (Packer variables, see image.packer).
    download_mirrors: Mirrors = field(default=Mirrors(None, None, None, ()), metadata={"fingerprint": False})
    # What a pod network plugin adds (issue 20): the Helm it is installed with, whether kubeadm's
    # kube-proxy image is baked (not when the plugin replaces kube-proxy), and the digest each
    # stored file must have where upstream publishes one.
    helm_version: str | None = None
    kube_proxy: bool = True
    cni_asset_sha256: tuple[tuple[str, str], ...] = ()

    def inputs(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if f.metadata.get("fingerprint", True)}

    def download(self, url: str) -> str:
        """Where the bake fetches an upstream release file from (plan.mirrors)."""
        return mirrormod.download_url(url, self.download_mirrors)

    @property
    def fingerprint(self) -> str:
        """A short hash of the bake inputs: same inputs, same image name."""
        blob = json.dumps(self.inputs(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def image_name(self) -> str:
        """k8s-<version>-<os>[-arm64]-<fingerprint>: the architecture is named where it is not
        amd64, so images of both can share a Proxmox node or a folder."""
        arch = "" if self.arch == versions.DEFAULT_ARCH else f"-{self.arch}"
        return f"k8s-{self.kubernetes_version.replace('.', '-')}-{self.os.replace('.', '')}{arch}-{self.fingerprint}"

    @property
    def release(self) -> versions.OsRelease:
        return versions.OS_RELEASES[self.os]

    @property
    def uefi(self) -> bool:
        return self.firmware == "uefi"


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, tuple) else v


def normalize_pem(pem: str) -> str:
    return pem.strip() + "\n"


def pem_der_sha256(pem: str) -> str:
    """SHA-256 of the certificate's DER: what the node check looks for in the system bundle."""
    m = _PEM_BODY.search(pem)
    assert m, "validation admits only PEM certificates"
    return hashlib.sha256(base64.b64decode("".join(m.group(1).split()))).hexdigest()


def site_ca_files(plan: ImagePlan) -> list[tuple[str, str]]:
    """(path, PEM) of each site CA in the image, in the order of trust.caCertificates."""
    return [(f"{SITE_CA_DIR}/bakery-site-{i}.crt", pem) for i, pem in enumerate(plan.ca_certificates, 1)]


def pinned_packages(plan: ImagePlan) -> list[tuple[str, str | None]]:
    """(name, version or None) of each extra package."""
    out: list[tuple[str, str | None]] = []
    for spec in plan.extra_packages:
        name, sep, version = spec.partition("=")
        out.append((name, version if sep else None))
    return out


def image_plan(cluster: Cluster) -> ImagePlan:
    k8s = cluster.kubernetes
    plugin = cni.plugin(cluster.cni)
    kube_vip = (f"ghcr.io/kube-vip/kube-vip:{cluster.control_plane.kube_vip_version}"
                if cluster.control_plane.vip else None)
    images = [f"registry.k8s.io/pause:{k8s.pause}", *plugin.images(cluster.cni)]
    if kube_vip:
        images.append(kube_vip)
    images += [i for i in cluster.image.extra_images if i not in images]
    mirrors = cluster.mirrors
    iso = versions.OS_RELEASES[cluster.os].iso(cluster.image.arch)
    pkgs_repo = versions.pkgs_repo(k8s.minor)
    if cluster.package_source == "pkgs.k8s.io":
        pkgs_repo = mirrormod.download_url(pkgs_repo, Mirrors(None, mirrors.kubernetes, None, ()))
    return ImagePlan(
        os=cluster.os,
        arch=cluster.image.arch,
        firmware=cluster.image.firmware,
        kubernetes_version=cluster.kubernetes_version,
        deb_version=f"{cluster.kubernetes_version}-{k8s.deb_revision}",
        package_source=cluster.package_source,
        pkgs_repo=pkgs_repo,
        containerd_version=cluster.containerd_version,
        containerd_config_version=cluster.containerd_config_version,
        runc_version=versions.RUNC_VERSION,
        cni_plugins_version=versions.CNI_PLUGINS_VERSION,
        crictl_version=k8s.crictl,
        pause_image=f"registry.k8s.io/pause:{k8s.pause}",
        images=tuple(images),
        cni=cluster.cni.name,
        cni_version=plugin.version(cluster.cni),
        cni_assets=tuple(plugin.assets(cluster.cni)),
        kube_vip_image=kube_vip,
        # A URL from cluster.yaml is the one place to fetch from; the catalog's release
        # may be at two (versions.ubuntu_live_server_urls).
        iso_urls=((cluster.image.iso_url,) if cluster.image.iso_url else iso.urls),
        iso_checksum=cluster.image.iso_checksum or iso.checksum,
        disk_size_mib=cluster.image.disk_size_mib,
        build_user=cluster.image.build_user,
        bakery_version=__version__,
        apt_mirror=mirrors.apt,
        ca_certificates=tuple(normalize_pem(p) for p in cluster.ca_certificates),
        registry_mirrors=mirrors.registries,
        # one apt-get install: their order changes no byte of the image, so not its name either
        extra_packages=tuple(sorted(cluster.image.extra_packages)),
        site_files=tuple((f.path, f.content, f.mode) for f in cluster.image.files),
        site_commands=cluster.image.commands,
        download_mirrors=Mirrors(None, mirrors.kubernetes, mirrors.downloads, ()),
        helm_version=plugin.helm_version(cluster.cni),
        kube_proxy=not plugin.replaces_kube_proxy(cluster.cni),
        cni_asset_sha256=tuple(sorted(plugin.asset_sha256(cluster.cni).items())),
    )


def node_check_expectations(plan: ImagePlan) -> dict:
    """What the node check (bakery/guest/nodecheck.py) expects of the image, from the same plan
    the bake scripts are rendered from: they cannot disagree."""
    return {
        "kubernetesVersion": plan.kubernetes_version,
        "packageSource": plan.package_source,
        "containerdVersion": plan.containerd_version,
        "pauseImage": plan.pause_image,
        "criSocket": CONTAINERD_SOCKET,
        "images": list(plan.images),
        "cniDir": cni_dir(plan.cni),
        "cniAssets": [name for name, _ in plan.cni_assets],
        "kernelModules": list(nodefacts.KERNEL_MODULES),
        "sysctls": dict(nodefacts.SYSCTLS),
        "ports": {role: list(ports) for role, ports in nodefacts.PREFLIGHT_PORTS.items()},
        # the site (issue 18)
        "caBundle": CA_BUNDLE,
        "caCertificates": [{"file": path, "sha256": pem_der_sha256(pem)} for path, pem in site_ca_files(plan)],
        "extraPackages": [{"name": n, "version": v} for n, v in pinned_packages(plan)],
        "registryHosts": [h.path for h in mirrormod.registry_hosts(Mirrors(None, None, None, plan.registry_mirrors))],
        # the file cloud-init's ntp module looks for (versions.TimeDaemon)
        "timeDaemon": {"package": plan.release.time_daemon.package, "file": plan.release.time_daemon.check_exe},
        "platform": platform_expectations(plan),
    } | _cni_expectations(plan)


def platform_expectations(plan: ImagePlan) -> dict:
    """The architecture and firmware the image was baked for (issue 21): the kernel's and
    dpkg's names for the one, the ELF machine of every program the bake downloaded for it, and
    under UEFI the boot loader at the removable-media path, which boots the image where its
    NVRAM entry is gone."""
    arch = versions.ARCHES[plan.arch]
    kube = [kubernetes_binary(name, plan.package_source) for name in KUBERNETES_BINARIES]
    binaries = [*RUNTIME_BINARIES, *kube]
    if plan.helm_version:
        binaries.append(HELM_BINARY)
    out = {"arch": arch.name, "uname": arch.uname, "elfMachine": arch.elf_machine, "binaries": binaries,
           "firmware": plan.firmware}
    if plan.uefi:
        out["efiBootFile"] = arch.efi_removable
    return out


def _cni_expectations(plan: ImagePlan) -> dict:
    """What a plugin adds to the node check (issue 20), only when it adds something: the Helm
    the bake installed, and no kube-proxy image among kubeadm's when the plugin replaces it."""
    out: dict[str, object] = {}
    if plan.helm_version:
        out["helmVersion"] = plan.helm_version
    if not plan.kube_proxy:
        out["kubeProxy"] = False
    return out
