"""Packer HCL2 templates, bake scripts and image files for the node image (issue 3).

`render_packer` writes everything under `packer/`: a user runs `packer init . && packer
build .` there, with PKR_VAR_build_password (and PKR_VAR_proxmox_token for Proxmox) in the
environment, and gets one image that serves every node of the cluster and holds no secret.

Decisions live here; templates under templates/packer/ only format. The bake runs in
kubernetes-sigs/image-builder's order; `bake_steps` is the ordered list of scripts, with
`seal` always last (a node check goes right before it).
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from dataclasses import dataclass, field

from .. import __version__, plan as planmod, providers, versions
from ..spec.model import Cluster
from ..plan import ImagePlan
from ..templating import dump_yaml, render_template
from ..output.layout import images_folder_name
from ..output.writer import OutputFile
from ..providers import proxmox, qemu, virtualbox

ROOT = "packer"
KIND = "packer"

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

KERNEL_MODULES = ("overlay", "br_netfilter")
SYSCTLS = (("net.ipv4.ip_forward", "1"),
           ("net.bridge.bridge-nf-call-iptables", "1"),
           ("net.bridge.bridge-nf-call-ip6tables", "1"))
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
# iptables, iproute2, socat, ethtool; cloud-init and growpart serve first boot).
BASE_PACKAGES = ("ca-certificates", "curl", "gpg", "conntrack", "socat", "ethtool", "iptables",
                 "iproute2", "cloud-init", "cloud-guest-utils", "qemu-guest-agent")
# Debian's cloud-init writes ifupdown files; their `dns-nameservers` lines only take effect
# through resolvconf (Ubuntu's netplan hands DNS to systemd-resolved instead).
FAMILY_PACKAGES = {"debian": ("resolvconf",), "ubuntu": ()}

# What the Ubuntu installer leaves that stops cloud-init on clones (image-builder
# roles/sysprep); the installer's netplan and sshd settings go too, cloud-init writes each
# node's own.
CLOUD_INIT_LEFTOVERS = (
    "/etc/cloud/cloud.cfg.d/99-installer.cfg",
    "/etc/cloud/cloud.cfg.d/90-installer-network.cfg",
    "/etc/cloud/cloud.cfg.d/curtin-preserve-sources.cfg",
    "/etc/cloud/ds-identify.cfg",
    "/etc/ssh/sshd_config.d/50-cloud-init.conf",
    "/etc/netplan/50-cloud-init.yaml",
)
CLOUD_INIT_GLOBS = (
    "/etc/cloud/cloud.cfg.d/*subiquity-disable-cloudinit-networking.cfg",
    "/etc/netplan/00-installer-config*.yaml",
)

# Packer names each build `<build block name>.<source type>.<source name>` and matches
# `packer build -only=GLOB` against that full name (hashicorp/packer
# hcl2template/types.packer_config.go; packer/build.go CoreBuild.Name). Provisioner-level
# `only` lists take `<source type>.<source name>` instead.
BUILD_NAME = "node"
SOURCE_NAME = "node"

def build_names(builders) -> list[str]:
    """The names `packer build -only=` matches, one per source of the build block."""
    return [f"{BUILD_NAME}.{b}.{SOURCE_NAME}" for b in builders]


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


def _os(plan: ImagePlan) -> versions.OsRelease:
    return versions.OS_RELEASES[plan.os]


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
        ("CALICO_VERSION", plan.calico_version),
        ("CALICO_DIR", planmod.CALICO_DIR),
        ("IMAGES_LIST", planmod.IMAGES_LIST),
    ]


def bake_steps(cluster: Cluster, plan: ImagePlan) -> list[Step]:
    """The bake scripts in the order they run (image-builder's: node, containerd,
    kubernetes, images, sysprep). Sealing is last; insert new steps before it."""
    osr = _os(plan)
    by_path = {f.path: f for f in image_files(cluster, plan)}

    def installs(*paths: str) -> list[tuple[str, str]]:
        return [(p, by_path[p].mode) for p in paths if p in by_path]

    cni = versions.cni_plugins_download(plan.cni_plugins_version)
    steps = [
        Step("05-prepare", "base packages; apt timers and unattended upgrades off", {
            "packages": BASE_PACKAGES + FAMILY_PACKAGES[osr.family],
            "files": installs(AUTO_UPGRADES, SSH_HOSTKEYS_DROPIN)}),
        Step("10-swap", "swap off now and for good"),
        Step("20-kernel", "kernel modules and sysctls for Kubernetes networking", {
            "modules": KERNEL_MODULES, "sysctls": SYSCTLS, "modules_file": MODULES_FILE,
            "sysctl_file": SYSCTL_FILE}),
        Step("30-containerd", f"containerd {plan.containerd_version}, runc, CNI plugins, crictl", {
            "containerd_version": plan.containerd_version, "runc_version": plan.runc_version,
            "cni_version": plan.cni_plugins_version, "crictl_version": plan.crictl_version,
            "config_version": plan.containerd_config_version,
            "containerd": versions.containerd_download(plan.containerd_version),
            "runc": versions.runc_download(plan.runc_version), "cni": cni,
            "crictl": versions.crictl_download(plan.crictl_version),
            "files": installs(CONTAINERD_CONFIG, CONTAINERD_UNIT, CRICTL_CONFIG)}),
        Step("40-kubernetes", f"kubeadm, kubelet, kubectl {plan.kubernetes_version} ({plan.package_source})", {
            "source": plan.package_source, "version": plan.kubernetes_version,
            "deb_version": plan.deb_version, "minor": versions.minor_of(plan.kubernetes_version),
            "repo": plan.pkgs_repo, "keyring": K8S_KEYRING, "packages": K8S_PACKAGES, "cni": cni,
            "binary_deps": ("conntrack", "socat", "ethtool", "iptables", "iproute2"),
            "binaries": [(name, *versions.kubernetes_binary_download(plan.kubernetes_version, name))
                         for name in K8S_PACKAGES],
            "files": installs(KUBELET_UNIT, KUBEADM_DROPIN)}),
        Step("50-images", "pre-pull every image and store the Calico manifests", {
            "version": plan.kubernetes_version, "socket": planmod.CONTAINERD_SOCKET,
            "images": plan.images, "kube_vip": plan.kube_vip_image is not None,
            "calico_version": plan.calico_version, "manifests": plan.calico_manifests,
            "bakery_dir": planmod.BAKERY_DIR, "calico_dir": planmod.CALICO_DIR,
            "images_list": planmod.IMAGES_LIST, "versions_file": planmod.VERSIONS_FILE}),
        Step(NODE_CHECK_STEP, "prove the image before sealing it: bakery-node-check --stage bake", {
            "files": installs(planmod.NODE_CHECK, planmod.NODE_CHECK_EXPECTED),
            "node_check": planmod.NODE_CHECK, "expected": planmod.NODE_CHECK_EXPECTED}),
        Step(SEAL, "seal the image: no machine identity, no host keys, no open account", {
            "family": osr.family, "cloud_init_leftovers": CLOUD_INIT_LEFTOVERS,
            "cloud_init_globs": CLOUD_INIT_GLOBS, "files": installs(REMOVE_USER_SCRIPT, REMOVE_USER_UNIT),
            "removal_unit": REMOVE_USER_UNIT_NAME, "removal_marker": REMOVE_USER_MARKER,
            "removal_marker_dir": posixpath.dirname(REMOVE_USER_MARKER)},
            env=(("BAKERY_BUILD_USER", "var.build_user"),)),
    ]
    return steps


SEAL = "90-seal"
NODE_CHECK_STEP = "80-node-check"


# --- installer ---------------------------------------------------------------------------

def _templatefile_escape(text: str) -> str:
    """Escape text for Packer's templatefile(): only the placeholders stay live."""
    return text.replace("${", "$${").replace("%{", "%%{")


_PLACEHOLDERS = {"@@BUILD_USER@@": "${build_user}", "@@PASSWORD_HASH@@": "${password_hash}"}


def _fill_placeholders(text: str) -> str:
    text = _templatefile_escape(text)
    for marker, live in _PLACEHOLDERS.items():
        text = text.replace(marker, live)
    return text


def _sudoers_commands(target: str) -> list[str]:
    path = f"{target}{SUDOERS_FILE}"
    return [f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' '@@BUILD_USER@@' > {path}",
            f"chmod 0440 {path}"]


def autoinstall_user_data(plan: ImagePlan) -> str:
    """Subiquity autoinstall for the Ubuntu live-server ISO (templatefile() input)."""
    doc = {"autoinstall": {
        "version": 1,
        # Packer must not reach the live installer's own SSH server (its password differs).
        "early-commands": ["systemctl stop ssh.service ssh.socket || true"],
        "refresh-installer": {"update": False},
        "locale": "en_US.UTF-8",
        "keyboard": {"layout": "us"},
        "timezone": "Etc/UTC",
        "identity": {"hostname": INSTALL_HOSTNAME, "realname": "Packer build user",
                     "username": "@@BUILD_USER@@", "password": "@@PASSWORD_HASH@@"},
        "ssh": {"install-server": True, "allow-pw": True},
        # One root filesystem and no swap file (the default layout creates /swap.img).
        "storage": {"layout": {"name": "direct"}, "swap": {"size": 0}},
        "packages": ["qemu-guest-agent", "cloud-guest-utils"],
        "updates": "security",
        # Passwordless sudo during the bake only; removed as the build's last action.
        "late-commands": _sudoers_commands("/target"),
        "shutdown": "reboot",
    }}
    header = ("#cloud-config\n"
              f"# Generated by bakery {__version__}: Ubuntu autoinstall for the node image, served by\n"
              "# Packer through templatefile(); the build user and the bcrypt hash of\n"
              "# PKR_VAR_build_password are filled in at build time and never stored.\n")
    return _fill_placeholders(header + dump_yaml(doc))


def preseed_cfg(cluster: Cluster, plan: ImagePlan) -> str:
    recipe = ("bakery-root :: 1024 100 -1 ext4 $primary{ } $bootable{ } method{ format } "
              "format{ } use_filesystem{ } filesystem{ ext4 } mountpoint{ / } .")
    text = render_template("packer/http/preseed.cfg.j2", bakery_version=__version__, os_name=plan.os,
                           hostname=INSTALL_HOSTNAME, recipe=recipe,
                           packages=("openssh-server", "sudo", "curl", "ca-certificates",
                                     "qemu-guest-agent", "cloud-init", "cloud-guest-utils"),
                           late_command="; ".join(_sudoers_commands("/target")))
    # The template holds ${build_user}/${password_hash} as the only live placeholders.
    text = text.replace("${build_user}", "@@BUILD_USER@@").replace("${password_hash}", "@@PASSWORD_HASH@@")
    return _fill_placeholders(text)


def http_files(cluster: Cluster, plan: ImagePlan) -> tuple[dict[str, str], list[tuple[str, str]], list[str]]:
    """(files under http/, http_content entries (path, HCL expression), boot command)."""
    osr = _os(plan)
    tpl_vars = "{ build_user = var.build_user, password_hash = bcrypt(var.build_password) }"
    seed = "http://{{ .HTTPIP }}:{{ .HTTPPort }}/"
    if osr.installer == "autoinstall":
        files = {"user-data.pkrtpl": autoinstall_user_data(plan),
                 "meta-data": f"instance-id: {INSTALL_HOSTNAME}\n"}
        content = [("/user-data", f'templatefile("${{path.root}}/http/user-data.pkrtpl", {tpl_vars})'),
                   ("/meta-data", 'file("${path.root}/http/meta-data")')]
        # GRUB (BIOS and UEFI) command line; `\;` keeps GRUB from splitting the seed address.
        # The installer's arguments go before `---`: curtin copies whatever follows it into
        # the installed system's GRUB_CMDLINE_LINUX_DEFAULT (curtin/commands/install_grub.py,
        # get_carryover_params), and every node would boot with them. `ds=nocloud` with an
        # http seed fetches over the network (cloud-init >= 23.2 picks the mode from the
        # seedfrom scheme, DataSourceNoCloud.load_cmdline_data); `nocloud-net` is deprecated
        # since 24.1.
        boot = ["c<wait>",
                f"linux /casper/vmlinuz autoinstall ds=nocloud\\;s={seed} ---<enter><wait>",
                "initrd /casper/initrd<enter><wait>",
                "boot<enter>"]
    else:
        files = {"preseed.cfg.pkrtpl": preseed_cfg(cluster, plan)}
        content = [("/preseed.cfg", f'templatefile("${{path.root}}/http/preseed.cfg.pkrtpl", {tpl_vars})')]
        boot = ["<esc><wait>",
                f"auto preseed/url={seed}preseed.cfg netcfg/get_hostname={INSTALL_HOSTNAME} "
                "netcfg/get_domain= <enter>"]
    return files, content, boot


# --- HCL ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    description: str
    default: object = None
    has_default: bool = True
    sensitive: bool = False
    validation: tuple[str, str] | None = None


def variables(cluster: Cluster, plan: ImagePlan) -> list[Variable]:
    img = cluster.image
    out = [
        Variable("build_user", "string", "User the installer creates and Packer connects as (its password hash is "
                 "removed by the seal, the account at each node's first boot).",
                 plan.build_user or img.build_user,
                 validation=('can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.build_user))',
                             "build_user must be a lower-case login name.")),
        Variable("build_password", "string",
                 "Password of the build user during the build; set PKR_VAR_build_password. Never stored.",
                 has_default=False, sensitive=True,
                 validation=("length(var.build_password) >= 8",
                             "Set PKR_VAR_build_password to a password of at least 8 characters.")),
        Variable("iso_urls", "list(string)", f"Installer ISO for {plan.os}: the same file at each URL, "
                 "tried in order.", list(plan.iso_urls),
                 validation=("length(var.iso_urls) > 0", "iso_urls needs at least one URL.")),
        Variable("iso_checksum", "string", "Checksum of the ISO (sha256:<hex> or file:<SHA256SUMS URL>).",
                 plan.iso_checksum),
        Variable("cpus", "number", "vCPUs of the build VM.", img.cpus),
        Variable("memory_mib", "number", "Memory of the build VM in MiB.", img.memory_mib),
        Variable("disk_size_mib", "number", "Disk size of the image in MiB.", plan.disk_size_mib or img.disk_size_mib),
        Variable("headless", "bool", "Run the build VM without a console window.", True),
        Variable("boot_wait", "string", "Wait before typing the boot command.", "5s"),
        Variable("ssh_timeout", "string", "How long the OS install may take before Packer gives up on SSH.", "90m"),
        # Outside the rendered tree (outputs/<cluster>/ is replaced whole by every render),
        # relative to packer/ where `packer build .` runs: outputs/<cluster>-images/, the
        # folder `bakery build` uses too.
        Variable("output_dir", "string", "Folder for build artifacts and manifest.json (outside the rendered "
                 "tree, which every render replaces).", f"../../{images_folder_name(cluster.name)}"),
    ]
    if proxmox.BUILDER in img.builders:
        px = img.proxmox
        out += [
            Variable("proxmox_url", "string", "Proxmox VE API URL (https://host:8006/api2/json).", px.url or ""),
            Variable("proxmox_token_id", "string", "API token id (user@realm!name).", px.token_id),
            Variable("proxmox_token", "string",
                     "API token secret; set PKR_VAR_proxmox_token. Empty only when not building on Proxmox.",
                     "", sensitive=True),
            Variable("proxmox_insecure_skip_tls_verify", "bool", "Accept a self-signed API certificate.",
                     px.insecure_skip_tls_verify),
            Variable("proxmox_node", "string", "Proxmox node that builds and keeps the template.", px.node),
            Variable("proxmox_iso_storage", "string", "Storage the ISO is uploaded to.", px.iso_storage),
            Variable("proxmox_disk_storage", "string", "Storage for the disk and the cloud-init drive.",
                     px.disk_storage),
            Variable("proxmox_bridge", "string", "Bridge of the build VM's network adapter.", px.bridge),
            Variable("proxmox_template_vm_id", "number", "VM id of the template.", px.template_vm_id),
            Variable("proxmox_cpu_type", "string",
                     "CPU type of the template (clones inherit it; Calico's images need x86-64-v2).", "host"),
        ]
    if qemu.BUILDER in img.builders:
        out.append(Variable("qemu_accelerator", "string", "QEMU accelerator: kvm, or tcg where /dev/kvm is missing.",
                            img.qemu_accelerator))
    return out


def provisioners(cluster: Cluster, plan: ImagePlan, steps: list[Step]) -> list[dict]:
    """Provisioner blocks in order: stage files/, one shell block per step, then (Proxmox,
    which has no shutdown_command) the removal of the build user's sudo grant."""
    q = lambda s: f'"{s}"'  # noqa: E731 - attribute values below are HCL expressions
    out = [
        {"type": "shell", "attrs": [("inline", f'["mkdir -p {STAGE_ROOT}"]')]},
        {"type": "file", "attrs": [("source", q("${path.root}/files")), ("destination", q(STAGE_ROOT))]},
    ]
    for step in steps:
        attrs = [("name", q(step.name)), ("script", q(f"${{path.root}}/{step.path}")),
                 ("execute_command", "local.execute_command")]
        if step.env:
            attrs.append(("environment_vars", "[" + ", ".join(f'"{k}=${{{v}}}"' for k, v in step.env) + "]"))
        out.append({"type": "shell", "attrs": attrs})
    if proxmox.BUILDER in cluster.image.builders:
        out.append({"type": "shell", "attrs": [
            ("name", q("drop-build-sudo")), ("only", f'["{proxmox.BUILDER}.{SOURCE_NAME}"]'),
            ("inline", f'["sudo -n rm -f {SUDOERS_FILE}"]')]})
    return out


def render_packer(cluster: Cluster, plan: ImagePlan) -> list[OutputFile]:
    osr = _os(plan)
    builders = list(cluster.image.builders)
    common = {"bakery_version": __version__, "cluster_name": cluster.name}
    out: list[OutputFile] = []

    def add(path: str, text: str, executable: bool = False) -> None:
        out.append(OutputFile(posixpath.join(ROOT, path), text.encode(), kind=KIND, executable=executable))

    plugins = []
    for b in builders:
        p = providers.BY_BUILDER[b]
        plugins.append({"name": p.PLUGIN, "version": f">= {p.PLUGIN_VERSION}", "source": p.PLUGIN_SOURCE})
    add("plugins.pkr.hcl", render_template("packer/plugins.pkr.hcl.j2", **common, plugins=plugins,
                                           required_version=f">= {versions.PACKER_VERSION}"))
    add("variables.pkr.hcl", render_template("packer/variables.pkr.hcl.j2", **common,
                                             variables=variables(cluster, plan),
                                             proxmox=proxmox.BUILDER in builders))

    http, http_content, boot = http_files(cluster, plan)
    for name, text in http.items():
        add(f"http/{name}", text)
    add("locals.pkr.hcl", render_template(
        "packer/locals.pkr.hcl.j2", **common, image_name=plan.image_name, http_content=http_content,
        installer=osr.installer, boot_command=boot,
        execute_command="sudo -n env {{ .Vars }} bash '{{ .Path }}'",
        shutdown_command=f"sudo -n sh -c 'rm -f {SUDOERS_FILE} && shutdown -P now'"))
    add("sources.pkr.hcl", render_template(
        "packer/sources.pkr.hcl.j2", **common, builders=builders, source_name=SOURCE_NAME, os_name=plan.os,
        installer=osr.installer,
        virtualbox={"guest_os_type": osr.virtualbox_guest_os_type, "rtc_time_base": virtualbox.RTC_TIME_BASE},
        proxmox={"description": f"Kubernetes {plan.kubernetes_version} node on {plan.os}, "
                                f"bakery fingerprint {plan.fingerprint}"}))

    steps = bake_steps(cluster, plan)
    add("build.pkr.hcl", render_template(
        "packer/build.pkr.hcl.j2", **common, build_name=BUILD_NAME,
        sources=[f"source.{b}.{SOURCE_NAME}" for b in builders],
        provisioners=provisioners(cluster, plan, steps),
        manifest_data=[("image_name", plan.image_name), ("bake_fingerprint", plan.fingerprint),
                       ("kubernetes_version", plan.kubernetes_version), ("os", plan.os),
                       ("containerd_version", plan.containerd_version),
                       ("calico_version", plan.calico_version)]))

    for f in image_files(cluster, plan):
        text = f.content if f.content is not None else render_template(f"packer/files/{f.template}", **common, **f.context)
        add(f"files{f.path}", text, executable=f.mode == "0755")
    for step in steps:
        ctx = {"step": step.name, "summary": step.summary, "stage": STAGE, "stage_root": STAGE_ROOT,
               "cache_dir": CACHE_DIR, **step.context}
        add(step.path, render_template(f"packer/scripts/{step.name}.sh.j2", **common, **ctx), executable=True)
    add("README.md", render_template("packer/README.md.j2", **common, image_name=plan.image_name,
                                     builds=[(b, name, providers.BY_BUILDER[b].NOTES)
                                             for b, name in zip(builders, build_names(builders))],
                                     proxmox=proxmox.BUILDER in builders))
    return out
