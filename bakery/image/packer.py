"""Packer HCL2 templates for the node image (issue 3), with the bake scripts and image files.

`render_packer` writes everything under `packer/`: a user runs `packer init . && packer
build .` there, with PKR_VAR_build_password (and PKR_VAR_proxmox_token for Proxmox) in the
environment, and gets one image that serves every node of the cluster and holds no secret.

Decisions live in Python; templates under templates/packer/ only format. steps.py holds the
bake (its scripts in kubernetes-sigs/image-builder's order, and the image's files),
installer.py the installer's answers (on a CIDATA CD or over Packer's HTTP server), this module the HCL.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .. import __version__, providers, versions
from ..output.layout import images_folder_name
from ..output.writer import OutputFile
from ..plan import ImagePlan
from ..plan import proxy as proxymod
from ..providers import proxmox, qemu, virtualbox
from ..spec.model import Cluster
from ..templating import hcl_string, render_template
from .installer import CD_LABEL, CDROM, boot_comment, installer_seed
from .steps import (
    CACHE_DIR,
    STAGE,
    STAGE_ROOT,
    SUDOERS_FILE,
    Step,
    bake_steps,
    image_files,
)

ROOT = "packer"
KIND = "packer"

# Packer names each build `<build block name>.<source type>.<source name>` and matches
# `packer build -only=GLOB` against that full name (hashicorp/packer
# hcl2template/types.packer_config.go; packer/build.go CoreBuild.Name). Provisioner-level
# `only` lists take `<source type>.<source name>` instead.
BUILD_NAME = "node"
SOURCE_NAME = "node"


def build_names(builders) -> list[str]:
    """The names `packer build -only=` matches, one per source of the build block."""
    return [f"{BUILD_NAME}.{b}.{SOURCE_NAME}" for b in builders]


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
        *proxy_variables(cluster),
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
        if plan.uefi:
            code, efivars = qemu.EFI_FIRMWARE[plan.arch]
            out += [Variable("qemu_efi_firmware_code", "string",
                             f"UEFI firmware code for {plan.arch} on the Packer host (read-only pflash).", code),
                    Variable("qemu_efi_firmware_vars", "string",
                             "UEFI variable store template on the Packer host, matching the code; the build "
                             "copies it.", efivars)]
    return out


def proxy_variables(cluster: Cluster) -> list[Variable]:
    """The bake's proxy: defaults from spec.proxy, empty for none; PKR_VAR_http_proxy etc.
    override them at build time. Every bake script gets them (steps.PROXY_ENV), and so do
    the installer and containerd during the bake; nothing of them stays in the image, so
    they are no input of the image's fingerprint."""
    px = cluster.proxy
    no_proxy = ",".join(proxymod.bake_no_proxy(px, cluster.mirrors)) if px else ""
    return [
        Variable("http_proxy", "string", "Proxy for http:// downloads of the bake (empty: none).",
                 (px.http if px else None) or ""),
        Variable("https_proxy", "string", "Proxy for https:// downloads of the bake (empty: none).",
                 (px.https if px else None) or ""),
        Variable("no_proxy", "string", "Comma-separated hosts and domains the bake reaches without the proxy.",
                 no_proxy),
    ]


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


def proxmox_boot_iso(px, arch: str) -> list[tuple[str, str]]:
    """The proxmox-iso boot_iso block's attributes (name, HCL expression). One source of the
    ISO: iso_file (already on the storage), or iso_urls, downloaded by Packer and uploaded to
    iso_storage_pool, or with iso_download_pve fetched by the Proxmox node itself, which checks
    iso_checksum (packer-plugin-proxmox builder/proxmox/iso/config.go: exactly one of
    iso_file, iso_url(s), cd_files/cd_content; iso_download_pve only with iso_url(s))."""
    attrs = [("type", f'"{proxmox.cd_bus(arch)}"')]
    if px.iso_file:
        attrs.append(("iso_file", hcl_string(px.iso_file)))
    else:
        attrs += [("iso_urls", "var.iso_urls"), ("iso_checksum", "var.iso_checksum"),
                  ("iso_storage_pool", "var.proxmox_iso_storage")]
        if px.iso_download == "pve":
            attrs.append(("iso_download_pve", "true"))
    attrs.append(("unmount", "true"))
    return attrs


def required_version() -> str:
    """The Packer core the templates need (the packer block's required_version)."""
    return f">= {versions.PACKER_VERSION}"


def render_packer(cluster: Cluster, plan: ImagePlan) -> list[OutputFile]:
    osr = plan.release
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
                                           required_version=required_version()))
    add("variables.pkr.hcl", render_template("packer/variables.pkr.hcl.j2", **common,
                                             variables=variables(cluster, plan),
                                             proxmox=proxmox.BUILDER in builders))

    medium, seed_files, seed_content, boot = installer_seed(cluster, plan)
    for name, text in seed_files.items():
        add(f"installer/{name}", text)
    add("locals.pkr.hcl", render_template(
        "packer/locals.pkr.hcl.j2", **common, image_name=plan.image_name, seed_content=seed_content,
        cdrom=medium == CDROM, boot_comment=boot_comment(plan, medium), boot_command=boot,
        execute_command="sudo -n env {{ .Vars }} bash '{{ .Path }}'",
        shutdown_command=f"sudo -n sh -c 'rm -f {SUDOERS_FILE} && shutdown -P now'"))
    add("sources.pkr.hcl", render_template(
        "packer/sources.pkr.hcl.j2", **common, builders=builders, source_name=SOURCE_NAME, os_name=plan.os,
        installer=osr.installer, cdrom=medium == CDROM, cd_label=CD_LABEL,
        boot_iso=proxmox_boot_iso(cluster.image.proxmox, plan.arch),
        virtualbox={"builder": virtualbox.BUILDER, "guest_os_type": osr.virtualbox_guest_os_type,
                    "rtc_time_base": virtualbox.RTC_TIME_BASE,
                    "platform": virtualbox.source_attributes(plan.arch, plan.firmware)
                    if virtualbox.BUILDER in builders else []},
        qemu={"builder": qemu.BUILDER,
              "platform": qemu.source_attributes(plan.arch, plan.firmware, medium == CDROM)},
        proxmox={"builder": proxmox.BUILDER, "description": f"Kubernetes {plan.kubernetes_version} node on {plan.os} "
                                f"{plan.arch} ({plan.firmware}), bakery fingerprint {plan.fingerprint}",
                 "platform": proxmox.source_attributes(plan.arch, plan.firmware),
                 "efi_config": proxmox.efi_config(plan.firmware), "cd_bus": proxmox.cd_bus(plan.arch)}))

    steps = bake_steps(cluster, plan)
    add("build.pkr.hcl", render_template(
        "packer/build.pkr.hcl.j2", **common, build_name=BUILD_NAME,
        sources=[f"source.{b}.{SOURCE_NAME}" for b in builders],
        provisioners=provisioners(cluster, plan, steps),
        manifest_data=[("image_name", plan.image_name), ("bake_fingerprint", plan.fingerprint),
                       ("kubernetes_version", plan.kubernetes_version), ("os", plan.os),
                       ("containerd_version", plan.containerd_version),
                       ("cni", plan.cni), ("cni_version", plan.cni_version)]))

    for f in image_files(cluster, plan):
        text = (f.content if f.content is not None
                else render_template(f"packer/files/{f.template}", **common, **f.context))
        add(f"files{f.path}", text, executable=f.mode == "0755")
    for step in steps:
        ctx = {"step": step.name, "summary": step.summary, "stage": STAGE, "stage_root": STAGE_ROOT,
               "cache_dir": CACHE_DIR, **step.context}
        add(step.path, render_template(f"packer/scripts/{step.name}.sh.j2", **common, **ctx), executable=True)
    add("README.md", render_template("packer/README.md.j2", **common, image_name=plan.image_name,
                                     builds=[(b, name, providers.BY_BUILDER[b].NOTES)
                                             for b, name in zip(builders, build_names(builders), strict=True)],
                                     proxmox=proxmox.BUILDER in builders, cdrom=medium == CDROM,
                                     iso_file=cluster.image.proxmox.iso_file,
                                     iso_download_pve=cluster.image.proxmox.iso_download == "pve"))
    return out
