"""The typed, immutable cluster model, with every default filled in.

Built from schema-valid, check-passed data; later stages read only this, never the YAML.
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from .. import versions
from . import derive
from .durations import parse_duration


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    role: str  # "control-plane" | "worker"
    address: ipaddress.IPv4Address
    interface: str
    mac: str | None
    labels: MappingProxyType
    taints: tuple[Taint, ...]
    cpus: int
    memory_mib: int
    vm_id: int
    generation: int = 0  # bumped by the user to re-provision the node (its instance-id)
    proxmox_node: str = ""  # the Proxmox VE host of its VM; build() resolves null to image.proxmox.node

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


@dataclass(frozen=True)
class Network:
    node_cidr: ipaddress.IPv4Network
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None
    nameservers: tuple[str, ...]
    dns_domain: str
    node_interface: str
    nat_interface: str | None


@dataclass(frozen=True)
class Calico:
    release: versions.CalicoRelease
    encapsulation: str
    mtu: int | None
    name: ClassVar[str] = "calico"  # its key under spec.cni


@dataclass(frozen=True)
class Cilium:
    release: versions.CiliumRelease
    kube_proxy_replacement: bool
    name: ClassVar[str] = "cilium"


@dataclass(frozen=True)
class Flannel:
    release: versions.FlannelRelease
    backend: str  # vxlan | host-gw
    name: ClassVar[str] = "flannel"


# The pod network plugin: one of these (bakery/cni has a module for each).
CniSettings = Calico | Cilium | Flannel


def _cni(cni: dict) -> CniSettings:
    """spec.cni after validation holds exactly one plugin (calico when none was written)."""
    (name, c), = cni.items()
    if name == "calico":
        return Calico(versions.CALICO[c["version"]], c["encapsulation"], c["mtu"])
    if name == "cilium":
        return Cilium(versions.CILIUM[c["version"]], c["kubeProxyReplacement"])
    if name == "flannel":
        return Flannel(versions.FLANNEL[c["version"]], c["backend"])
    raise AssertionError(f"validation admits no CNI {name}")


@dataclass(frozen=True)
class ControlPlane:
    endpoint_host: str
    endpoint_port: int
    vip: ipaddress.IPv4Address | None
    kube_vip_version: str

    @property
    def endpoint(self) -> str:
        return f"{self.endpoint_host}:{self.endpoint_port}"


@dataclass(frozen=True)
class Proxmox:
    url: str | None
    token_id: str
    node: str
    iso_storage: str
    disk_storage: str
    snippet_storage: str
    bridge: str
    template_vm_id: int
    first_vm_id: int
    insecure_skip_tls_verify: bool
    iso_file: str | None = None  # "storage:iso/name.iso" already on Proxmox: no upload, no download
    iso_download: str = "upload"  # upload (Packer fetches and uploads) | pve (the node fetches the URL)


@dataclass(frozen=True)
class SiteFile:
    """spec.image.files[]: a file of the site's, placed in the image."""

    path: str
    content: str
    mode: str  # four octal digits, e.g. "0644"


@dataclass(frozen=True)
class Proxy:
    """spec.proxy: the site's HTTP(S) proxy (plan.proxy makes the NO_PROXY lists)."""

    http: str | None
    https: str | None
    no_proxy: tuple[str, ...]  # the user's entries only


@dataclass(frozen=True)
class Mirrors:
    apt: str | None
    kubernetes: str | None
    downloads: str | None
    registries: tuple[tuple[str, str], ...]  # (registry host, mirror URL), sorted by host


@dataclass(frozen=True)
class FirstBoot:
    pre_commands: tuple[str, ...]
    post_commands: tuple[str, ...]


@dataclass(frozen=True)
class KubernetesSettings:
    """spec.kubernetes' settings of the components (schema-valid, checked: kubelet fields
    known and not bakery's own, flags not bakery's own)."""

    kubelet: MappingProxyType  # KubeletConfiguration fields to merge (read-only view; copy before use)
    api_server_args: tuple[tuple[str, str], ...]
    api_server_cert_sans: tuple[str, ...]
    controller_manager_args: tuple[tuple[str, str], ...]
    scheduler_args: tuple[tuple[str, str], ...]
    audit_enabled: bool
    audit_policy: MappingProxyType | None  # None: bakery's default policy
    encryption_at_rest: bool


@dataclass(frozen=True)
class Image:
    builders: tuple[str, ...]
    cpus: int
    memory_mib: int
    disk_size_mib: int
    build_user: str
    iso_url: str | None
    iso_checksum: str | None
    virtualbox_host_only: str
    proxmox: Proxmox
    qemu_accelerator: str
    extra_packages: tuple[str, ...] = ()  # "name" or "name=version" (pinned and held)
    extra_images: tuple[str, ...] = ()
    files: tuple[SiteFile, ...] = ()
    commands: tuple[str, ...] = ()
    installer_seed: str = "cdrom"  # cdrom (a CIDATA CD Packer builds) | http (Packer's HTTP server)
    arch: str = versions.DEFAULT_ARCH  # amd64 | arm64 (versions.ARCHES)
    firmware: str = "bios"  # bios | uefi, the OS's default filled in (derive.image_firmware)


@dataclass(frozen=True)
class Cluster:
    name: str
    kubernetes_version: str
    kubernetes: versions.KubernetesMinor
    package_source: str
    containerd_version: str
    os: str
    network: Network
    cni: CniSettings
    control_plane: ControlPlane
    initialized: bool  # spec.bootstrap.initialized: the cluster runs; every node joins it
    token_ttl: str
    token_ttl_seconds: int
    join_timeout_seconds: int
    key_algorithm: str
    ca_validity_days: int
    admin_cert_validity_days: int
    user: str
    ssh_authorized_keys: tuple[str, ...]
    image: Image
    nodes: tuple[Node, ...] = field(repr=False)
    proxy: Proxy | None = None  # None: no proxy
    mirrors: Mirrors = Mirrors(None, None, None, ())
    ca_certificates: tuple[str, ...] = ()  # PEM, one certificate each
    ntp_servers: tuple[str, ...] = ()
    first_boot: FirstBoot = FirstBoot((), ())
    settings: KubernetesSettings = field(default_factory=lambda: KubernetesSettings(
        MappingProxyType({}), (), (), (), (), False, None, False))

    @property
    def control_plane_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.is_control_plane)

    @property
    def init_node(self) -> Node:
        return self.control_plane_nodes[0]

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if not n.is_control_plane)

    @property
    def containerd_config_version(self) -> int:
        return versions.containerd_config_version(self.containerd_version)


CONTROL_PLANE_TAINT = Taint("node-role.kubernetes.io/control-plane", "NoSchedule")


def build(data: dict) -> Cluster:
    spec = data["spec"]
    net = spec["network"]
    network = Network(
        node_cidr=ipaddress.IPv4Network(net["nodeCidr"]),  # the schema allows IPv4 only
        pod_cidr=ipaddress.IPv4Network(net["podCidr"]),
        service_cidr=ipaddress.IPv4Network(net["serviceCidr"]),
        gateway=ipaddress.IPv4Address(net["gateway"]) if net["gateway"] else None,
        nameservers=tuple(net["nameservers"]),
        dns_domain=net["dnsDomain"],
        node_interface=net["nodeInterface"],
        nat_interface=net["natInterface"],
    )
    img = spec["image"]
    px = img["proxmox"]
    image = Image(
        builders=tuple(img["builders"]), cpus=img["cpus"], memory_mib=img["memoryMiB"],
        disk_size_mib=img["diskSizeMiB"], build_user=img["buildUser"],
        iso_url=img["iso"]["url"], iso_checksum=img["iso"]["checksum"],
        virtualbox_host_only=img["virtualbox"]["hostOnlyInterface"],
        proxmox=Proxmox(px["url"], px["tokenId"], px["node"], px["isoStorage"], px["diskStorage"],
                        px["snippetStorage"], px["bridge"], px["templateVmId"], px["firstVmId"],
                        px["insecureSkipTlsVerify"], px["isoFile"], px["isoDownload"]),
        qemu_accelerator=img["qemu"]["accelerator"],
        extra_packages=tuple(img["extraPackages"]),
        extra_images=tuple(img["extraImages"]),
        files=tuple(SiteFile(f["path"], f["content"], f["mode"].rjust(4, "0")) for f in img["files"]),
        commands=tuple(img["commands"]),
        installer_seed=img["installerSeed"],
        arch=img["arch"], firmware=derive.image_firmware(spec),
    )
    has_workers = any(n["role"] == "worker" for n in spec["nodes"])
    nodes = []
    for i, n in enumerate(spec["nodes"]):
        if n["taints"] is not None:
            taints = tuple(Taint(t["key"], t["effect"], t.get("value", "")) for t in n["taints"])
        elif n["role"] == "control-plane" and has_workers:
            taints = (CONTROL_PLANE_TAINT,)
        else:
            taints = ()  # a cluster without workers must schedule on its control plane
        nodes.append(Node(
            index=i, name=n["name"], role=n["role"], address=ipaddress.IPv4Address(n["address"]),
            interface=n["interface"] or network.node_interface,
            mac=n["mac"].lower() if n["mac"] else None,
            labels=MappingProxyType(dict(sorted(n["labels"].items()))), taints=taints,
            cpus=derive.node_cpus(n, img), memory_mib=derive.node_memory_mib(n, img),
            vm_id=derive.node_vm_id(n, i, px), generation=n["generation"],
            proxmox_node=n["proxmoxNode"] or px["node"],
        ))
    cp = spec["controlPlane"]
    vip = ipaddress.IPv4Address(cp["vip"]) if cp["vip"] else None
    if cp["endpoint"]:
        host, port = derive.split_endpoint(cp["endpoint"])
    else:
        first_cp = next(n for n in nodes if n.is_control_plane)
        host, port = str(vip or first_cp.address), str(derive.DEFAULT_API_PORT)
    k8s_version = spec["kubernetes"]["version"]
    kubernetes = versions.kubernetes_minor(k8s_version)
    assert kubernetes is not None, "validation admits only catalogued Kubernetes minors"
    sec = spec["secrets"]
    return Cluster(
        name=data["metadata"]["name"],
        kubernetes_version=k8s_version,
        kubernetes=kubernetes,
        package_source=spec["kubernetes"]["packageSource"],
        containerd_version=spec["containerd"]["version"],
        os=spec["os"],
        network=network,
        cni=_cni(spec["cni"]),
        control_plane=ControlPlane(host, int(port), vip,
                                   cp["kubeVip"]["version"] or versions.KUBE_VIP_VERSION),
        initialized=spec["bootstrap"]["initialized"],
        token_ttl=spec["bootstrap"]["tokenTTL"],
        token_ttl_seconds=parse_duration(spec["bootstrap"]["tokenTTL"]),
        join_timeout_seconds=parse_duration(spec["bootstrap"]["joinTimeout"]),
        key_algorithm=sec["keyAlgorithm"],
        ca_validity_days=sec["caValidityDays"],
        admin_cert_validity_days=sec["adminCertValidityDays"],
        user=spec["access"]["user"],
        ssh_authorized_keys=tuple(spec["access"]["sshAuthorizedKeys"]),
        image=image,
        nodes=tuple(nodes),
        proxy=_proxy(spec["proxy"]),
        mirrors=Mirrors(spec["mirrors"]["apt"], spec["mirrors"]["kubernetes"], spec["mirrors"]["downloads"],
                        tuple(sorted(spec["mirrors"]["registries"].items()))),
        ca_certificates=tuple(spec["trust"]["caCertificates"]),
        ntp_servers=tuple(spec["ntp"]["servers"]),
        first_boot=FirstBoot(tuple(spec["firstBoot"]["preCommands"]), tuple(spec["firstBoot"]["postCommands"])),
        settings=_settings(spec["kubernetes"]),
    )


def _proxy(px: dict) -> Proxy | None:
    if not px["http"] and not px["https"]:
        return None
    return Proxy(px["http"], px["https"], tuple(px["noProxy"]))


def _settings(k: dict) -> KubernetesSettings:
    audit = k["auditPolicy"]
    return KubernetesSettings(
        kubelet=MappingProxyType(copy.deepcopy(k["kubelet"])),
        api_server_args=tuple(sorted(k["apiServer"]["extraArgs"].items())),
        api_server_cert_sans=tuple(k["apiServer"]["certSANs"]),
        controller_manager_args=tuple(sorted(k["controllerManager"]["extraArgs"].items())),
        scheduler_args=tuple(sorted(k["scheduler"]["extraArgs"].items())),
        audit_enabled=audit["enabled"],
        audit_policy=MappingProxyType(copy.deepcopy(audit["policy"])) if audit["policy"] is not None else None,
        encryption_at_rest=k["encryptionAtRest"],
    )
