"""The image plan: everything that decides the bytes of the node image, computed once from
the model, and what the node check expects of that image."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .. import __version__, nodefacts, versions
from ..spec.model import Cluster
from .paths import CALICO_DIR, CONTAINERD_SOCKET


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides the bytes of the node image (and nothing node-specific)."""

    os: str
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
    calico_version: str
    calico_manifests: tuple[tuple[str, str], ...]  # (file name, URL)
    kube_vip_image: str | None
    # What else decides the bytes of the image (issue 3): the installer ISO, the disk, the
    # build user the installer creates (removed again, see image.steps.REMOVE_USER_SCRIPT), and the bakery release whose
    # scripts bake it. Build-VM sizing (cpus, memory) is not an input: it changes no byte.
    iso_urls: tuple[str, ...] = ()  # one file, tried at each location in order
    iso_checksum: str = ""
    disk_size_mib: int = 0
    build_user: str = ""
    bakery_version: str = ""

    def inputs(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @property
    def fingerprint(self) -> str:
        """A short hash of the bake inputs: same inputs, same image name."""
        blob = json.dumps(self.inputs(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def image_name(self) -> str:
        return f"k8s-{self.kubernetes_version.replace('.', '-')}-{self.os.replace('.', '')}-{self.fingerprint}"


def image_plan(cluster: Cluster) -> ImagePlan:
    k8s = cluster.kubernetes
    calico = cluster.calico.release
    kube_vip = (f"ghcr.io/kube-vip/kube-vip:{cluster.control_plane.kube_vip_version}"
                if cluster.control_plane.vip else None)
    images = [f"registry.k8s.io/pause:{k8s.pause}", *calico.images()]
    if kube_vip:
        images.append(kube_vip)
    return ImagePlan(
        os=cluster.os,
        kubernetes_version=cluster.kubernetes_version,
        deb_version=f"{cluster.kubernetes_version}-{k8s.deb_revision}",
        package_source=cluster.package_source,
        pkgs_repo=versions.pkgs_repo(k8s.minor),
        containerd_version=cluster.containerd_version,
        containerd_config_version=cluster.containerd_config_version,
        runc_version=versions.RUNC_VERSION,
        cni_plugins_version=versions.CNI_PLUGINS_VERSION,
        crictl_version=k8s.crictl,
        pause_image=f"registry.k8s.io/pause:{k8s.pause}",
        images=tuple(images),
        calico_version=calico.version,
        calico_manifests=tuple((name, calico.manifest_url(name)) for name in calico.manifests()),
        kube_vip_image=kube_vip,
        # A URL from cluster.yaml is the one place to fetch from; the catalog's release
        # may be at two (versions.ubuntu_live_server_urls).
        iso_urls=((cluster.image.iso_url,) if cluster.image.iso_url else versions.OS_RELEASES[cluster.os].iso_urls),
        iso_checksum=cluster.image.iso_checksum or versions.OS_RELEASES[cluster.os].iso_checksum,
        disk_size_mib=cluster.image.disk_size_mib,
        build_user=cluster.image.build_user,
        bakery_version=__version__,
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
        "calicoDir": CALICO_DIR,
        "calicoManifests": [name for name, _ in plan.calico_manifests],
        "kernelModules": list(nodefacts.KERNEL_MODULES),
        "sysctls": dict(nodefacts.SYSCTLS),
        "ports": {role: list(ports) for role, ports in nodefacts.PREFLIGHT_PORTS.items()},
    }
