"""The bake: the scripts that prepare the node image, in kubernetes-sigs/image-builder's order
(node, containerd, kubernetes, images, sysprep), with `seal` always last; and the files the
image gets. Scripts are templates under templates/packer/scripts/ that only format."""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, versions
from .. import cni as cnimod
from .. import plan as planmod
from ..nodefacts import CLOUD_INIT_GLOBS, CLOUD_INIT_LEFTOVERS, KERNEL_MODULES, SYSCTLS
from ..plan import ImagePlan
from ..plan import image as imageplan
from ..plan import mirrors as mirrormod
from ..spec.model import Cluster, Mirrors

# On the build VM: the file provisioner uploads files/ to STAGE_ROOT/files; downloads are
# cached in CACHE_DIR. Sealing removes both.
STAGE_ROOT = "/tmp/bakery"
STAGE = f"{STAGE_ROOT}/files"
CACHE_DIR = "/var/cache/bakery"
SUDOERS_FILE = "/etc/sudoers.d/90-bakery-build"  # the build user's grant, removed last
INSTALL_HOSTNAME = "bakery-build"
# The build user leaves in two steps. The seal replaces its password hash with '*' (no
# password matches; sudo NOPASSWD and Packer's open SSH session keep working, so the
# shutdown_command or the drop-build-sudo provisioner still runs) and drops the /etc/shadow-
# backup that would keep the old hash. The account itself cannot be deleted during the bake:
# Packer is logged in as it, and runs more commands as it after the seal (the shell
# provisioner's script cleanup, shutdown_command). So a oneshot unit deletes it at each
# node's first boot, before cloud-init, named by a marker the seal writes (the user comes
# from var.build_user at build time). A userdel in shutdown_command would cover VirtualBox
# and QEMU only; Proxmox stops the VM through its API.
REMOVE_USER_SCRIPT = "/usr/local/sbin/bakery-remove-build-user"
REMOVE_USER_UNIT_NAME = "bakery-remove-build-user.service"
REMOVE_USER_UNIT = f"/etc/systemd/system/{REMOVE_USER_UNIT_NAME}"
REMOVE_USER_MARKER = "/var/lib/bakery/build-user"

MODULES_FILE = "/etc/modules-load.d/k8s.conf"
SYSCTL_FILE = "/etc/sysctl.d/k8s.conf"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_UNIT = "/usr/local/lib/systemd/system/containerd.service"
CRICTL_CONFIG = "/etc/crictl.yaml"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"
SSH_HOSTKEYS_DROPIN = "/etc/systemd/system/ssh.service.d/10-bakery-hostkeys.conf"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
KUBEADM_DROPIN = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
K8S_KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
K8S_PACKAGES = ("kubelet", "kubeadm", "kubectl")

# Packages every image gets before the bake proper (kubeadm preflight needs conntrack,
# iptables, iproute2, socat, ethtool; cloud-init and growpart serve first boot), and the
# release's time daemon, which cloud-init's ntp module configures and would download at first
# boot were it missing (versions.TimeDaemon).
BASE_PACKAGES = ("ca-certificates", "curl", "gpg", "conntrack", "socat", "ethtool", "iptables",
                 "iproute2", "cloud-init", "cloud-guest-utils", "qemu-guest-agent")

# The bake's proxy (Packer variables http_proxy, https_proxy, no_proxy) reaches every bake
# script through the shell provisioner's environment_vars, in both spellings (curl reads the
# lower-case http_proxy only; apt reads http_proxy/https_proxy; Go programs either: see
# plan.proxy). An empty variable is unset by each script (_header.sh.j2).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy")
PROXY_ENV = tuple((spelling, f"var.{var}") for var in PROXY_VARIABLES for spelling in (var.upper(), var))
# containerd pulls the images itself: during the bake it gets the proxy from this drop-in,
# which the seal removes (each node gets the run-time proxy from cloud-init).
BAKE_PROXY_DROPIN = "/etc/systemd/system/containerd.service.d/90-bakery-bake-proxy.conf"
# Where the installers leave the proxy they were given for the installed system's apt: d-i
# (mirror/http/proxy) in /etc/apt/apt.conf; curtin (subiquity's `proxy:`) in
# /etc/apt/apt.conf.d/90curtin-aptproxy (95curtin-proxy in older releases) or 94curtin-config
# (curtin/commands/apt_config.py, APT_PROXY_FN / APT_CONFIG_FN). The seal removes their
# Acquire::*::Proxy lines.
INSTALLER_APT_PROXY_FILES = ("/etc/apt/apt.conf", "/etc/apt/apt.conf.d/90curtin-aptproxy",
                             "/etc/apt/apt.conf.d/95curtin-proxy", "/etc/apt/apt.conf.d/94curtin-config")
# subiquity also gives the installed system's snapd the proxy, in a drop-in of its own
# (subiquity/server/server.py: write_files snapd_dropin, ProxyModel.proxy_systemd_dropin).
INSTALLER_PROXY_DROPINS = ("/etc/systemd/system/snapd.service.d/snap_proxy.conf",)
# Debian's cloud-init writes ifupdown files; their `dns-nameservers` lines only take effect
# through resolvconf (Ubuntu's netplan hands DNS to systemd-resolved instead).
FAMILY_PACKAGES = {"debian": ("resolvconf",), "ubuntu": ()}

@dataclass(frozen=True)
class Step:
    """One bake script: scripts/<name>.sh from templates/packer/scripts/<name>.sh.j2."""

    name: str
    summary: str
    context: dict = field(default_factory=dict, hash=False, compare=False)
    env: tuple[tuple[str, str], ...] = ()  # (NAME, HCL expression) for environment_vars

    @property
    def path(self) -> str:
        return f"scripts/{self.name}.sh"


@dataclass(frozen=True)
class ImageFile:
    """A file the image gets, at files/<path> and on the node at <path>."""

    path: str
    template: str
    mode: str = "0644"
    context: dict = field(default_factory=dict, hash=False, compare=False)
    content: str | None = None  # verbatim content instead of a template


def socket_path(plan: ImagePlan) -> str:
    return planmod.CONTAINERD_SOCKET.removeprefix("unix://")


def image_files(cluster: Cluster, plan: ImagePlan) -> list[ImageFile]:
    """Every file the image gets from files/, laid out as its path on the node."""
    cfg = plan.containerd_config_version
    files = [
        ImageFile(AUTO_UPGRADES, "20auto-upgrades.j2"),
        ImageFile(SSH_HOSTKEYS_DROPIN, "ssh-hostkeys.conf.j2"),
        ImageFile(MODULES_FILE, "modules-load.conf.j2", context={"modules": KERNEL_MODULES}),
        ImageFile(SYSCTL_FILE, "sysctl.conf.j2", context={"sysctls": SYSCTLS}),
        ImageFile(CONTAINERD_CONFIG, f"containerd-config-v{cfg}.toml.j2", context={
            "containerd_version": plan.containerd_version, "socket_path": socket_path(plan),
            "pause_image": plan.pause_image}),
        ImageFile(CONTAINERD_UNIT, "containerd.service.j2"),
        ImageFile(CRICTL_CONFIG, "crictl.yaml.j2", context={"socket": planmod.CONTAINERD_SOCKET}),
        ImageFile(planmod.VERSIONS_FILE, "versions.env.j2", context={"entries": versions_entries(plan)}),
    ]
    # The site (issue 18): its CAs, containerd's registry mirrors, its own files.
    files += [ImageFile(path, "", content=pem) for path, pem in imageplan.site_ca_files(plan)]
    files += [ImageFile(h.path, "hosts.toml.j2", context={"doc": mirrormod.hosts_toml(h), "registry": h.registry})
              for h in registry_hosts(plan)]
    files += [ImageFile(path, "", mode, content=content) for path, content, mode in plan.site_files]
    if plan.package_source == "dl.k8s.io":
        files += [ImageFile(KUBELET_UNIT, "kubelet.service.j2"),
                  ImageFile(KUBEADM_DROPIN, "10-kubeadm.conf.j2")]
    removal = {"marker": REMOVE_USER_MARKER, "script": REMOVE_USER_SCRIPT, "unit_name": REMOVE_USER_UNIT_NAME,
               "sudoers_file": SUDOERS_FILE}
    files += [ImageFile(REMOVE_USER_SCRIPT, "remove-build-user.sh.j2", "0755", context=removal),
              ImageFile(REMOVE_USER_UNIT, "remove-build-user.service.j2", context=removal)]
    # The node check (issue 9): the program itself, verbatim, and what it expects.
    files += [
        ImageFile(planmod.NODE_CHECK, "", "0755", content=node_check_source()),
        ImageFile(planmod.NODE_CHECK_EXPECTED, "", content=json.dumps(
            planmod.node_check_expectations(plan), indent=2, sort_keys=True) + "\n"),
    ]
    return files


def registry_hosts(plan: ImagePlan) -> list[mirrormod.RegistryHosts]:
    return mirrormod.registry_hosts(Mirrors(None, None, None, plan.registry_mirrors))


def node_check_source() -> str:
    from ..guest import nodecheck

    return Path(nodecheck.__file__).read_text()


def versions_entries(plan: ImagePlan) -> list[tuple[str, str]]:
    return [
        ("BAKERY_VERSION", plan.bakery_version or __version__),
        ("BAKERY_IMAGE_NAME", plan.image_name),
        ("BAKERY_FINGERPRINT", plan.fingerprint),
        ("OS", plan.os),
        ("KUBERNETES_VERSION", plan.kubernetes_version),
        ("KUBERNETES_PACKAGE_SOURCE", plan.package_source),
        ("KUBERNETES_DEB_VERSION", plan.deb_version if plan.package_source == "pkgs.k8s.io" else ""),
        ("CONTAINERD_VERSION", plan.containerd_version),
        ("CONTAINERD_CONFIG_VERSION", str(plan.containerd_config_version)),
        ("RUNC_VERSION", plan.runc_version),
        ("CNI_PLUGINS_VERSION", plan.cni_plugins_version),
        ("CRICTL_VERSION", plan.crictl_version),
        ("PAUSE_IMAGE", plan.pause_image),
        ("CNI", plan.cni),
        ("CNI_VERSION", plan.cni_version),
        ("CNI_DIR", planmod.cni_dir(plan.cni)),
        ("IMAGES_LIST", planmod.IMAGES_LIST),
    ] + ([("HELM_VERSION", plan.helm_version)] if plan.helm_version else [])


def uefi_context(plan: ImagePlan) -> dict | None:
    """What 05-prepare needs to keep GRUB at the removable-media path (None under BIOS)."""
    if not plan.uefi:
        return None
    arch = versions.ARCHES[plan.arch]
    return {"removable": arch.efi_removable, "target": arch.grub_efi_target, "package": arch.grub_efi_package}


def bake_steps(cluster: Cluster, plan: ImagePlan) -> list[Step]:
    """The bake scripts in the order they run (image-builder's: node, containerd,
    kubernetes, images, sysprep). Sealing is last; insert new steps before it."""
    osr = plan.release
    by_path = {f.path: f for f in image_files(cluster, plan)}

    def installs(*paths: str) -> list[tuple[str, str]]:
        return [(p, by_path[p].mode) for p in paths if p in by_path]

    def fetched(pair: tuple[str, str]) -> tuple[str, str]:
        return plan.download(pair[0]), plan.download(pair[1])

    ca_files = [path for path, _ in imageplan.site_ca_files(plan)]
    hosts_files = [h.path for h in registry_hosts(plan)]
    site_paths = [path for path, _, _ in plan.site_files]
    cni = fetched(versions.cni_plugins_download(plan.cni_plugins_version, plan.arch))
    cni_title = f"{cnimod.PLUGINS[plan.cni].TITLE} {plan.cni_version}"
    steps = [
        Step("05-prepare", "the site's CAs trusted; base packages; apt timers and unattended upgrades off", {
            "packages": BASE_PACKAGES + (osr.time_daemon.package,) + FAMILY_PACKAGES[osr.family],
            "ca_files": installs(*ca_files), "ca_bundle": imageplan.CA_BUNDLE,
            "files": installs(AUTO_UPGRADES, SSH_HOSTKEYS_DROPIN), "uefi": uefi_context(plan)}),
        Step("10-swap", "swap off now and for good"),
        Step("20-kernel", "kernel modules and sysctls for Kubernetes networking", {
            "modules": KERNEL_MODULES, "sysctls": SYSCTLS, "modules_file": MODULES_FILE,
            "sysctl_file": SYSCTL_FILE}),
        Step("30-containerd", f"containerd {plan.containerd_version}, runc, CNI plugins, crictl", {
            "containerd_version": plan.containerd_version, "runc_version": plan.runc_version,
            "cni_version": plan.cni_plugins_version, "crictl_version": plan.crictl_version,
            "config_version": plan.containerd_config_version,
            "containerd": fetched(versions.containerd_download(plan.containerd_version, plan.arch)),
            "runc": fetched(versions.runc_download(plan.runc_version, plan.arch)), "cni": cni,
            "crictl": fetched(versions.crictl_download(plan.crictl_version, plan.arch)),
            "bake_proxy_dropin": BAKE_PROXY_DROPIN,
            "files": installs(CONTAINERD_CONFIG, CONTAINERD_UNIT, CRICTL_CONFIG, *hosts_files)}),
        Step("40-kubernetes", f"kubeadm, kubelet, kubectl {plan.kubernetes_version} ({plan.package_source})", {
            "source": plan.package_source, "version": plan.kubernetes_version,
            "deb_version": plan.deb_version, "minor": versions.minor_of(plan.kubernetes_version),
            "repo": plan.pkgs_repo, "keyring": K8S_KEYRING, "packages": K8S_PACKAGES, "cni": cni,
            "binary_deps": ("conntrack", "socat", "ethtool", "iptables", "iproute2"),
            "binaries": [(name, *fetched(versions.kubernetes_binary_download(plan.kubernetes_version, name, plan.arch)))
                         for name in K8S_PACKAGES],
            "files": installs(KUBELET_UNIT, KUBEADM_DROPIN)}),
        Step("50-images", f"pre-pull every image and store the files of {cni_title}", {
            "version": plan.kubernetes_version, "socket": planmod.CONTAINERD_SOCKET,
            "images": plan.images, "kube_vip": plan.kube_vip_image is not None,
            "cni_title": cni_title,
            "assets": [(name, plan.download(url)) for name, url in plan.cni_assets],
            "bakery_dir": planmod.BAKERY_DIR, "cni_dir": planmod.cni_dir(plan.cni),
            "images_list": planmod.IMAGES_LIST, "versions_file": planmod.VERSIONS_FILE,
            # issue 20: kubeadm's kube-proxy image only when kube-proxy runs; the digests
            # upstream publishes for stored files; the Helm a plugin is installed with
            "kube_proxy": plan.kube_proxy, "asset_sha256": plan.cni_asset_sha256,
            "helm": fetched(versions.helm_download(plan.helm_version, plan.arch)) if plan.helm_version else None,
            "helm_version": plan.helm_version, "arch": plan.arch}),
        Step(SITE_STEP, "the site's packages, files and commands", {
            "packages": imageplan.pinned_packages(plan), "files": installs(*site_paths),
            "commands": plan.site_commands}),
        Step(NODE_CHECK_STEP, "prove the image before sealing it: bakery-node-check --stage bake", {
            "files": installs(planmod.NODE_CHECK, planmod.NODE_CHECK_EXPECTED),
            "node_check": planmod.NODE_CHECK, "expected": planmod.NODE_CHECK_EXPECTED}),
        Step(SEAL, "seal the image: no machine identity, no host keys, no open account", {
            "family": osr.family, "cloud_init_leftovers": CLOUD_INIT_LEFTOVERS,
            "cloud_init_globs": CLOUD_INIT_GLOBS, "files": installs(REMOVE_USER_SCRIPT, REMOVE_USER_UNIT),
            "removal_unit": REMOVE_USER_UNIT_NAME, "removal_marker": REMOVE_USER_MARKER,
            "removal_marker_dir": posixpath.dirname(REMOVE_USER_MARKER),
            "bake_proxy_dropin": BAKE_PROXY_DROPIN, "bake_proxy_dropin_dir": posixpath.dirname(BAKE_PROXY_DROPIN),
            "installer_proxy_files": [f for f in INSTALLER_APT_PROXY_FILES if f not in site_paths],
            "installer_proxy_dropins": [f for f in INSTALLER_PROXY_DROPINS if f not in site_paths]},
            env=(("BAKERY_BUILD_USER", "var.build_user"),)),
    ]
    return [Step(s.name, s.summary, s.context, PROXY_ENV + s.env) for s in steps]


SEAL = "90-seal"
SITE_STEP = "60-site"
NODE_CHECK_STEP = "80-node-check"
