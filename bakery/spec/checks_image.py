"""Semantic checks of the image's installer seed and Proxmox ISO source (issue 19). Registered
with the others (``checkbase.check``); IDs are listed in the README."""
from __future__ import annotations

from collections.abc import Iterator

from .. import versions
from ..errors import Diagnostic
from .checkbase import Ctx, check


@check("proxmox-iso-source")
def _proxmox_iso_source(ctx: Ctx) -> Iterator[Diagnostic]:
    px = ctx.spec["image"]["proxmox"]
    if px["isoFile"] and px["isoDownload"] == "pve":
        yield ctx.err("proxmox-iso-source", ("spec", "image", "proxmox", "isoDownload"),
                      "spec.image.proxmox.isoDownload: pve and isoFile both say where the installer ISO comes "
                      f"from: isoFile uses {px['isoFile']} as it is, so there is nothing for Proxmox to download",
                      "drop isoDownload to boot the ISO already on the storage, or drop isoFile to have the "
                      "Proxmox node fetch the catalog's ISO")


@check("installer-seed")
def _installer_seed(ctx: Ctx) -> Iterator[Diagnostic]:
    path = ("spec", "image", "installerSeed")
    release = versions.OS_RELEASES.get(ctx.spec["os"])
    # Only a value written in cluster.yaml: the default (cdrom) means "the CD where the OS can".
    if release is None or path not in ctx.doc.positions:
        return
    if ctx.spec["image"]["installerSeed"] == "cdrom" and release.installer != "autoinstall":
        yield ctx.err("installer-seed", path,
                      f"{ctx.spec['os']}'s installer (debian-installer) cannot read its preseed from a second CD: "
                      "it mounts only its own installation CD",
                      "remove installerSeed or set it to http: the preseed is served by Packer's HTTP server, so "
                      "the build VM must reach the Packer host")
