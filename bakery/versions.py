"""The versions catalog: every version-dependent fact bakery needs, in one place.

Nothing else in bakery (code or template) spells a version, but for the Packer plugins, each
in its provider's module (bakery/providers/). Sources, checked in 2026:
- pause image per kubeadm minor: kubernetes `cmd/kubeadm/app/constants` (as tracked by
  minikube's constants);
- kubeadm config API: v1beta4 from 1.31 (`cmd/kubeadm/app/apis/kubeadm/v1beta4`);
- package repo and deb revision: pkgs.k8s.io, one repo per minor, debs `X.Y.Z-1.1`;
- containerd per Kubernetes minor: containerd `RELEASES.md` (Kubernetes support table);
- Calico per Kubernetes minor and its operator: tigera/docs system requirements and the
  `tigera-operator.yaml` manifest of each release;
- container image registries: Calico moved to quay.io with 3.30.4.
"""
from __future__ import annotations

from dataclasses import dataclass


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.lstrip("v").split("-")[0].split("."))


def minor_of(text: str) -> str:
    major, minor = parse_version(text)[:2]
    return f"{major}.{minor}"


@dataclass(frozen=True)
class KubernetesMinor:
    minor: str
    newest_patch: str
    deb_revision: str
    kubeadm_api: str  # kubeadm.k8s.io/<this>
    pause: str
    crictl: str
    # containerd: minimum patch per containerd minor that the release table lists for
    # this Kubernetes minor; a containerd minor not listed is not recommended.
    containerd_min: dict[str, str]

    @property
    def super_admin_conf(self) -> bool:
        """kubeadm writes super-admin.conf (system:masters) at init and binds admin.conf
        through RBAC from 1.29 on."""
        return parse_version(self.minor) >= (1, 29)


KUBERNETES: dict[str, KubernetesMinor] = {
    m.minor: m
    for m in [
        KubernetesMinor("1.31", "1.31.14", "1.1", "v1beta4", "3.10", "v1.31.1",
                        {"1.6": "1.6.34", "1.7": "1.7.20", "2.0": "2.0.0", "2.1": "2.1.0"}),
        KubernetesMinor("1.32", "1.32.13", "1.1", "v1beta4", "3.10", "v1.32.0",
                        {"1.6": "1.6.36", "1.7": "1.7.24", "2.0": "2.0.1", "2.1": "2.1.0"}),
        KubernetesMinor("1.33", "1.33.13", "1.1", "v1beta4", "3.10", "v1.33.0",
                        {"1.6": "1.6.36", "1.7": "1.7.24", "2.0": "2.0.4", "2.1": "2.1.0"}),
        KubernetesMinor("1.34", "1.34.10", "1.1", "v1beta4", "3.10.1", "v1.34.0",
                        {"1.6": "1.6.39", "1.7": "1.7.28", "2.0": "2.0.6", "2.1": "2.1.3"}),
        KubernetesMinor("1.35", "1.35.7", "1.1", "v1beta4", "3.10.1", "v1.35.0",
                        {"1.7": "1.7.28", "2.1": "2.1.5", "2.2": "2.2.0"}),
        KubernetesMinor("1.36", "1.36.3", "1.1", "v1beta4", "3.10.2", "v1.36.0",
                        {"2.2": "2.2.0", "2.3": "2.3.0"}),
    ]
}
SUPPORTED_MINORS = sorted(KUBERNETES, key=parse_version)


@dataclass(frozen=True)
class CalicoRelease:
    version: str  # vX.Y.Z
    operator: str  # quay.io/tigera/operator tag
    kubernetes: tuple[str, str]  # tested Kubernetes minors, inclusive

    @property
    def registry(self) -> str:
        return "quay.io/calico" if parse_version(self.version) >= (3, 30, 4) else "docker.io/calico"

    @property
    def components(self) -> tuple[str, ...]:
        base = ["node", "cni", "kube-controllers", "typha", "pod2daemon-flexvol", "csi",
                "node-driver-registrar", "apiserver"]
        if parse_version(self.version) >= (3, 30, 0):
            base += ["goldmane", "whisker", "whisker-backend"]
        return tuple(base)

    def images(self) -> list[str]:
        return [f"quay.io/tigera/operator:{self.operator}"] + [
            f"{self.registry}/{c}:{self.version}" for c in self.components]

    def manifests(self) -> list[str]:
        """Manifest files the install applies, in order: together they hold every object of
        the operator install exactly once, the CRDs (the Installation's among them) first.
        From the objects of each manifest at each release tag of projectcalico/calico
        (tests/data/specs/calico-manifests-objects.json):
        - 3.32+: `operator-crds.yaml` is a byte-identical legacy copy of
          `v1_crd_projectcalico_org.yaml` (`manifests/generate.sh`): only the latter;
        - 3.30, 3.31: `operator-crds.yaml`, then `tigera-operator.yaml` (which has no CRD);
        - 3.29: `tigera-operator.yaml` alone: it holds every CRD of `operator-crds.yaml`."""
        v = parse_version(self.version)
        if v >= (3, 32, 0):
            return ["v1_crd_projectcalico_org.yaml", "tigera-operator.yaml"]
        if v >= (3, 30, 0):
            return ["operator-crds.yaml", "tigera-operator.yaml"]
        return ["tigera-operator.yaml"]

    def manifest_url(self, name: str) -> str:
        return f"https://raw.githubusercontent.com/projectcalico/calico/{self.version}/manifests/{name}"

    def supports(self, k8s_minor: str) -> bool:
        lo, hi = (parse_version(v) for v in self.kubernetes)
        return lo <= parse_version(k8s_minor) <= hi


CALICO: dict[str, CalicoRelease] = {
    c.version: c
    for c in [
        CalicoRelease("v3.29.7", "v1.36.16", ("1.29", "1.32")),
        CalicoRelease("v3.30.7", "v1.38.13", ("1.31", "1.35")),
        CalicoRelease("v3.31.7", "v1.40.15", ("1.32", "1.35")),
        CalicoRelease("v3.32.1", "v1.42.3", ("1.34", "1.36")),
    ]
}

def _within(minor: str, lo: str, hi: str | None) -> bool:
    v = parse_version(minor)
    return parse_version(lo) <= v and (hi is None or v <= parse_version(hi))


@dataclass(frozen=True)
class CiliumRelease:
    """A Cilium release, installed from its Helm chart (https://helm.cilium.io, the
    cilium/charts repository: index.yaml's digest is chart_sha256). images: what the chart
    deploys by default (values.yaml `image`, `operator.image`, `envoy.image` with
    useDigest: true, so the pods ask for repository:tag@digest; hubble-relay, hubble-ui,
    certgen and the rest are off by default). kubernetes: the tested minors of the release's
    Documentation/network/kubernetes/compatibility.rst. charts_commit: the cilium/charts
    commit that added the chart ("Add cilium vX.Y.Z@<release commit>")."""

    version: str  # vX.Y.Z (the chart's version without the v)
    chart_sha256: str
    images: tuple[str, ...]
    kubernetes: tuple[str, str]  # inclusive
    charts_commit: str

    @property
    def chart_version(self) -> str:
        return self.version.removeprefix("v")

    @property
    def chart_name(self) -> str:
        return f"cilium-{self.chart_version}.tgz"

    @property
    def chart_url(self) -> str:
        """helm.cilium.io is GitHub Pages of cilium/charts (its CNAME file), which keeps every
        chart tgz at its root: the same bytes from GitHub at the commit that added it, so a
        downloads mirror (a stand-in for github.com, plan.mirrors) serves it too. The bake
        verifies chart_sha256 whichever host answered."""
        return f"https://raw.githubusercontent.com/cilium/charts/{self.charts_commit}/{self.chart_name}"

    def supports(self, k8s_minor: str) -> bool:
        return _within(k8s_minor, *self.kubernetes)


CILIUM: dict[str, CiliumRelease] = {
    c.version: c
    for c in [
        CiliumRelease("v1.18.12", "5923f9d9fcb11bc4692ad52353cc791b935d96e09ba0c535c5a8b88ea8a37572", (
            "quay.io/cilium/cilium:v1.18.12"
            "@sha256:94149589d9b77fe3a78f900121b36fab51b1ede0c4190924e2328facc37de210",
            "quay.io/cilium/operator-generic:v1.18.12"
            "@sha256:86899c73438812b2761ac6fa435ea4e65f68e70d1ae54ac806fec8805d1ce011",
            "quay.io/cilium/cilium-envoy:v1.36.9-1782267392-edeb3f2af56c37c407efa1f63f0b32f595399bbc"
            "@sha256:767101fb8a5e38f055778cb43b7aa8eed80450b37f8121effac3d9de9e06dc99",
        ), ("1.30", "1.33"), "ee5ca22d35cb6dc4a20fc019a387bc2d70206ccc"),
        CiliumRelease("v1.19.6", "21c43cf53841f9ab0375047d95aa4c64051ea52bbd2c679416e6408f5f1c9179", (
            "quay.io/cilium/cilium:v1.19.6"
            "@sha256:0df5b2750b64c49843aba1d649e9eaf61467cb0645ad3171db6f6962c095ac92",
            "quay.io/cilium/operator-generic:v1.19.6"
            "@sha256:0db4ca4e06969d8904ee036617795d0e9c3228cf7b8d902ba74fc2bb98d2d665",
            "quay.io/cilium/cilium-envoy:v1.36.9-1782267392-edeb3f2af56c37c407efa1f63f0b32f595399bbc"
            "@sha256:767101fb8a5e38f055778cb43b7aa8eed80450b37f8121effac3d9de9e06dc99",
        ), ("1.32", "1.35"), "3934d0b79ba94eabe279d415eed9dea27a931cf2"),
        CiliumRelease("v1.20.0", "c5f013912360d1a334f44ef25f36da59ba3414cdb48f466ee12d0c4fdff27883", (
            "quay.io/cilium/cilium:v1.20.0"
            "@sha256:383968cd5e8873f7976fa76aa6196045643558f4cc9518a207b9335cb24a0e93",
            "quay.io/cilium/operator-generic:v1.20.0"
            "@sha256:80744a8cc7c91c2f9e6347629406844eb35d79b30a732c6d41c15b17232a74f3",
            "quay.io/cilium/cilium-envoy:v1.37.5-1782911245-7cffc778c923f68a77954a53b1a98d6b5353f004"
            "@sha256:583057dd4f7d54cd41efff3c413aa0b148ac201f522e2c3336851fa89c78b039",
        ), ("1.33", "1.36"), "d5f3d1cc0ed8e94d6920996024fefe5a3857dc15"),
    ]
}

# Helm, which installs Cilium's chart at first boot: the newest release of the current major
# line, Helm 4 (github.com/helm/helm tag v4.2.4, 2026-08-13).
HELM_VERSION = "v4.2.4"

# Flannel: no tested range is published; flannel says "For Kubernetes v1.17+" (README.md) and
# "flanneld itself should work with any version of Kubernetes" (Documentation/kubernetes.md).
FLANNEL_KUBERNETES_FROM = "1.17"


@dataclass(frozen=True)
class FlannelRelease:
    """A flannel release, installed from its release manifest (the kube-flannel.yml asset that
    the release workflow builds with `kubectl kustomize Documentation/kustomization/kube-flannel/`).
    images: the manifest's (flannel, and its CNI plugin installed by an init container)."""

    version: str  # vX.Y.Z
    cni_plugin: str  # the flannel-cni-plugin tag of the manifest

    @property
    def manifest_url(self) -> str:
        return f"https://github.com/flannel-io/flannel/releases/download/{self.version}/kube-flannel.yml"

    def images(self) -> list[str]:
        return [f"ghcr.io/flannel-io/flannel:{self.version}",
                f"ghcr.io/flannel-io/flannel-cni-plugin:{self.cni_plugin}"]

    def supports(self, k8s_minor: str) -> bool:
        return _within(k8s_minor, FLANNEL_KUBERNETES_FROM, None)


FLANNEL: dict[str, FlannelRelease] = {
    f.version: f
    for f in [
        FlannelRelease("v0.28.7", "v1.9.1-flannel2"),
        FlannelRelease("v0.28.8", "v1.9.1-flannel2"),
        FlannelRelease("v0.28.9", "v1.9.1-flannel3"),
    ]
}


def cni_versions_for(catalog: dict, k8s_minor: str) -> list[str]:
    return [v for v, r in catalog.items() if r.supports(k8s_minor)]


# Pieces installed beside containerd from their release tarballs.
# (kubernetes-sigs/image-builder kubernetes-version-matrix.yaml pins these for 1.36.)
RUNC_VERSION = "1.4.3"
CNI_PLUGINS_VERSION = "1.9.1"
KUBE_VIP_VERSION = "v1.0.0"


def containerd_config_version(containerd_version: str) -> int:
    """containerd's config.toml schema: 2 for 1.x, 3 for 2.0-2.2, 4 from 2.3 (docs/cri/config.md)."""
    v = parse_version(containerd_version)
    if v[0] < 2:
        return 2
    return 3 if v[:2] < (2, 3) else 4


def pkgs_repo(k8s_minor: str) -> str:
    return f"https://pkgs.k8s.io/core:/stable:/v{k8s_minor}/deb/"


def kubernetes_minor(version: str) -> KubernetesMinor | None:
    return KUBERNETES.get(minor_of(version))


def calico_versions_for(k8s_minor: str) -> list[str]:
    return [c.version for c in CALICO.values() if c.supports(k8s_minor)]


def containerd_recommended(k8s: KubernetesMinor, containerd_version: str) -> bool:
    cminor = minor_of(containerd_version)
    floor = k8s.containerd_min.get(cminor)
    return floor is not None and parse_version(containerd_version) >= parse_version(floor)


def describe_containerd(k8s: KubernetesMinor) -> str:
    return ", ".join(f"{floor}+" for _, floor in sorted(k8s.containerd_min.items(),
                                                        key=lambda kv: parse_version(kv[0]), reverse=True))


# --- Node image bake (issue 3) ---
# Installer ISOs per spec.os and architecture. Packer tries `iso_urls` in order and verifies
# whichever it gets against one checksum (packer-plugin-sdk multistep/commonsteps/iso_config.go:
# "All URLs must point to the same file (same checksum)"; iso_url and iso_urls are mutually
# exclusive). A `file:` checksum is fetched when the template is prepared, so it must live
# where the ISO never moves from, or be replaced when it moves (see each entry).


@dataclass(frozen=True)
class Arch:
    """A CPU architecture of the node image (spec.image.arch), by each consumer's name for it."""

    name: str  # Debian's and every release download's (dpkg --print-architecture, linux-<arch>)
    uname: str  # the kernel's (uname -m)
    elf_machine: int  # e_machine of its ELF binaries (elf.h: EM_X86_64 62, EM_AARCH64 183)
    efi_removable: str  # the UEFI removable-media boot file (UEFI spec 2.10, 3.5.1.1)
    debian_installer_dir: str  # the netinst ISO's installer folder (debian-cd boot-x86 / boot-arm64)
    grub_efi_target: str  # grub-install --target
    grub_efi_package: str  # the GRUB package of an EFI install (grub2's debian/control)


ARCHES: dict[str, Arch] = {a.name: a for a in [
    Arch("amd64", "x86_64", 62, "/boot/efi/EFI/BOOT/BOOTX64.EFI", "install.amd", "x86_64-efi", "grub-efi-amd64"),
    Arch("arm64", "aarch64", 183, "/boot/efi/EFI/BOOT/BOOTAA64.EFI", "install.a64", "arm64-efi", "grub-efi-arm64"),
]}
DEFAULT_ARCH = "amd64"


@dataclass(frozen=True)
class Iso:
    urls: tuple[str, ...]  # the same file at each location, tried in order
    checksum: str  # Packer's form: sha256:<hex> or file:<SHA256SUMS URL>


@dataclass(frozen=True)
class TimeDaemon:
    """The NTP client the image keeps: its package, the file cloud-init's ntp module checks
    before it configures the client rather than installing one (cloudinit/config/cc_ntp.py,
    NTP_CLIENT_CONFIG[<client>]["check_exe"]), and its name there (`ntp_client`)."""

    package: str
    check_exe: str
    ntp_client: str


# systemd-timesyncd: cc_ntp's check_exe; /lib resolves through merged /usr on every release.
TIMESYNCD = TimeDaemon("systemd-timesyncd", "/lib/systemd/systemd-timesyncd", "systemd-timesyncd")
# chrony: cc_ntp's check_exe is `chronyd`, found on PATH (/usr/sbin/chronyd from the package).
CHRONY = TimeDaemon("chrony", "/usr/sbin/chronyd", "chrony")


@dataclass(frozen=True)
class OsRelease:
    name: str  # spec.os
    family: str  # "ubuntu" | "debian"
    installer: str  # "autoinstall" (subiquity) | "preseed" (debian-installer)
    point_release: str
    isos: tuple[tuple[str, Iso], ...]  # (arch, ISO) for every architecture it is offered for
    virtualbox_guest_os_type: str
    # spec.image.firmware when cluster.yaml names none, on amd64 (arm64 is UEFI only): what the
    # release's users build (see README, "Operating systems").
    default_firmware: str
    time_daemon: TimeDaemon = TIMESYNCD
    # subiquity's autoinstall keys the release's schema has (and bakery writes): `apt.fallback`
    # (24.04 on) and `kernel-crash-dumps` (26.04 on; tests/data/specs/subiquity-autoinstall-*).
    autoinstall_keys: frozenset[str] = frozenset()

    def iso(self, arch: str) -> Iso:
        return dict(self.isos)[arch]


def ubuntu_live_server_urls(point: str) -> tuple[str, ...]:
    """releases.ubuntu.com serves only the current point release of a series; a superseded
    one moves to old-releases.ubuntu.com/releases/<version>/ (FACTS.md; e.g. 22.04.4 lives
    at old-releases.ubuntu.com/releases/22.04.4/ since 22.04.5). Both, so the pin keeps
    working after the next point release. Its SHA256SUMS moves too: pin the hash.
    amd64 only: releases.ubuntu.com has no other architecture."""
    name = f"ubuntu-{point}-live-server-amd64.iso"
    return (f"https://releases.ubuntu.com/{point}/{name}",
            f"https://old-releases.ubuntu.com/releases/{point}/{name}")


def ubuntu_ports_iso(point: str, arch: str) -> Iso:
    """Ubuntu's other architectures are on cdimage.ubuntu.com/releases/<point>/release/ with
    their SHA256SUMS (kubernetes-sigs/image-builder packer/maas/maas-ubuntu-2204-arm64.json
    and maas-ubuntu-2404-arm64.json; chef/bento ubuntu-24.04-aarch64.pkrvars.hcl). No hash of
    these ISOs could be read from here, so the checksum is that file, fetched at build time."""
    base = f"https://cdimage.ubuntu.com/releases/{point}/release/"
    return Iso((base + f"ubuntu-{point}-live-server-{arch}.iso",), f"file:{base}SHA256SUMS")


def debian_netinst(point: str, arch: str, current_stable: bool, sha256: str | None = None) -> Iso:
    """cdimage.debian.org keeps every superseded point release for good under
    cdimage/archive/<v>/; the current stable point release is under cdimage/release/<v>/ until
    the next one replaces it and it moves to archive/. An oldstable release such as bookworm
    (since trixie, 13, in 2025) is published under archive/ only (cdimage/archive/latest-
    oldstable/ points there). The checksum: the given hash, else the SHA256SUMS beside the
    first URL (for the current stable release valid until its next point release, when the
    catalog moves to it)."""
    tail = f"{point}/{arch}/iso-cd/"
    archive = f"https://cdimage.debian.org/cdimage/archive/{tail}"
    release = f"https://cdimage.debian.org/cdimage/release/{tail}"
    name = f"debian-{point}-{arch}-netinst.iso"
    urls = (release + name, archive + name) if current_stable else (archive + name,)
    return Iso(urls, f"sha256:{sha256}" if sha256 else f"file:{urls[0].rsplit('/', 1)[0]}/SHA256SUMS")


OS_RELEASES: dict[str, OsRelease] = {
    r.name: r
    for r in [
        # 22.04.5 (2024-09) is jammy's last point release. sha256 of the live-server ISO
        # from releases.ubuntu.com/22.04.5/SHA256SUMS.
        OsRelease("ubuntu-22.04", "ubuntu", "autoinstall", "22.04.5", (
            ("amd64", Iso(ubuntu_live_server_urls("22.04.5"),
                          "sha256:9bc6028870aef3f74f4e16b900008179e78b130e6b0b9a140635434a46aa98b0")),
            ("arm64", ubuntu_ports_iso("22.04.5", "arm64"))), "Ubuntu_64", "bios"),
        # 24.04.5 (2026-09, ubuntu/ubuntu-release-notes docs/24.04/5.md "Changes in Ubuntu
        # 24.04.5"; schedule.md) supersedes 24.04.4. sha256 from
        # releases.ubuntu.com/24.04.5/SHA256SUMS.
        OsRelease("ubuntu-24.04", "ubuntu", "autoinstall", "24.04.5", (
            ("amd64", Iso(ubuntu_live_server_urls("24.04.5"),
                          "sha256:97f3d7ffb032c3eb3b23d2c8be9cc76e60c2c1f2c0146ba5ba9fe01cafae0fd8")),
            ("arm64", ubuntu_ports_iso("24.04.5", "arm64"))), "Ubuntu_64", "bios",
            autoinstall_keys=frozenset({"apt.fallback"})),
        # 26.04 "resolute" (GA 2026-04-23, dists/resolute/Release); 26.04.1 (2026-08-27,
        # ubuntu-release-notes docs/26.04/schedule.md). The amd64 sha256 is the one three
        # unrelated public Packer configurations pin for ubuntu-26.04.1-live-server-amd64.iso;
        # releases.ubuntu.com is unreachable from where this was written. chrony is the
        # release's time daemon (release notes: "Chrony is now used as the default time daemon
        # replacing systemd-timesyncd"; systemd-timesyncd Conflicts: time-daemon, so installing
        # it would remove chrony). UEFI by default: what 26.04 installs boot (Canonical's
        # -efi image-builder targets; Proxmox's arm64 guests).
        OsRelease("ubuntu-26.04", "ubuntu", "autoinstall", "26.04.1", (
            ("amd64", Iso(ubuntu_live_server_urls("26.04.1"),
                          "sha256:cc8a95cde20f6ced61a322420de00f10cc3c90ced545daa46cb9c1a117f1d927")),
            ("arm64", ubuntu_ports_iso("26.04.1", "arm64"))), "Ubuntu_64", "uefi",
            time_daemon=CHRONY, autoinstall_keys=frozenset({"apt.fallback", "kernel-crash-dumps"})),
        # Debian 12 is oldstable: 12.15.0 is its newest point release (cdimage/archive/
        # latest-oldstable). The archive never moves, so its SHA256SUMS can be the checksum.
        OsRelease("debian-12", "debian", "preseed", "12.15.0", tuple(
            (a, debian_netinst("12.15.0", a, current_stable=False)) for a in ("amd64", "arm64")),
            "Debian_64", "bios"),
        # Debian 13 "trixie", 13.8 (dists/trixie/Release: "Debian 13.8 Released 21 November
        # 2026"), installer 20250803+deb13u8. No copy of its SHA256SUMS could be read from here:
        # the checksum is cdimage/release/13.8.0/<arch>/iso-cd/SHA256SUMS, which moves to
        # archive/ with 13.9 (then spec.image.iso.checksum, or the next bakery, names it).
        OsRelease("debian-13", "debian", "preseed", "13.8.0", tuple(
            (a, debian_netinst("13.8.0", a, current_stable=True)) for a in ("amd64", "arm64")),
            "Debian_64", "uefi"),
    ]
}
FIRMWARES = ("bios", "uefi")
# UEFI is the only firmware of every arm64 machine bakery builds on (QEMU's virt board,
# Proxmox's aarch64 guests: qemu-server's OVMF/AAVMF only).
ARM64_FIRMWARE = "uefi"

# Packer core the templates are written (and tested) against. The plugins' versions
# (hashicorp/packer-plugin-* release tags) are each provider's, in bakery/providers/.
PACKER_VERSION = "1.16.0"

# Release downloads the bake verifies by sha256 (each project publishes a checksum file
# beside the artifact), for the image's architecture: every project names it as Debian does
# (amd64, arm64) and publishes both (containerd RELEASES.md "Which file should I download?";
# runc script/release_build.sh; containernetworking/plugins scripts/release.sh; cri-tools
# hack/release.sh; kubernetes hack/lib/golang.sh KUBE_SUPPORTED_SERVER_PLATFORMS; helm Makefile
# TARGETS).


def containerd_download(version: str, arch: str) -> tuple[str, str]:
    """(tarball URL, checksum URL): containerd-<v>-linux-<arch>.tar.gz + .sha256sum."""
    url = (f"https://github.com/containerd/containerd/releases/download/v{version}/"
           f"containerd-{version}-linux-{arch}.tar.gz")
    return url, url + ".sha256sum"


def runc_download(version: str, arch: str) -> tuple[str, str]:
    """(binary URL, checksum URL): runc.<arch> and the release's runc.sha256sum."""
    base = f"https://github.com/opencontainers/runc/releases/download/v{version}/"
    return base + f"runc.{arch}", base + "runc.sha256sum"


def cni_plugins_download(version: str, arch: str) -> tuple[str, str]:
    url = (f"https://github.com/containernetworking/plugins/releases/download/v{version}/"
           f"cni-plugins-linux-{arch}-v{version}.tgz")
    return url, url + ".sha256"


def crictl_download(tag: str, arch: str) -> tuple[str, str]:
    url = (f"https://github.com/kubernetes-sigs/cri-tools/releases/download/{tag}/"
           f"crictl-{tag}-linux-{arch}.tar.gz")
    return url, url + ".sha256"


def helm_download(tag: str, arch: str) -> tuple[str, str]:
    """(tarball URL, checksum URL): helm's release tarballs live on get.helm.sh only (GitHub
    holds their signatures); `make checksum` (helm Makefile) writes `.sha256sum` ("hash  name",
    sha256sum's format) beside each. The tarball holds linux-<arch>/helm."""
    url = f"https://get.helm.sh/helm-{tag}-linux-{arch}.tar.gz"
    return url, url + ".sha256sum"


def kubernetes_binary_download(version: str, name: str, arch: str) -> tuple[str, str]:
    url = f"https://dl.k8s.io/release/v{version}/bin/linux/{arch}/{name}"
    return url, url + ".sha256"
