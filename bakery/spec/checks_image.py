"""Semantic checks of the image's Proxmox ISO source (issue 19). Registered
with the others (``checkbase.check``); IDs are listed in the README."""
from __future__ import annotations

from collections.abc import Iterator

from ..errors import Diagnostic
from ..providers import proxmox, qemu, virtualbox
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


@check("arch-builder")
def _arch_builder(ctx: Ctx) -> Iterator[Diagnostic]:
    img = ctx.spec["image"]
    if img["arch"] == "arm64" and virtualbox.BUILDER in img["builders"]:
        yield ctx.err("arch-builder", ("spec", "image", "builders"),
                      f"spec.image.arch: arm64 cannot be built with {virtualbox.BUILDER}: bakery bakes arm64 "
                      f"images with QEMU and Proxmox VE only"
                      + ("" if ("spec", "image", "builders") in ctx.doc.positions else
                         f" (spec.image.builders is not set, and its default includes {virtualbox.BUILDER})"),
                      f"set spec.image.builders to [{qemu.BUILDER}], [{proxmox.BUILDER}] or both, "
                      "or build an amd64 image")


@check("arch-firmware")
def _arch_firmware(ctx: Ctx) -> Iterator[Diagnostic]:
    img = ctx.spec["image"]
    if img["arch"] == "arm64" and img["firmware"] == "bios":
        yield ctx.err("arch-firmware", ("spec", "image", "firmware"),
                      "spec.image.firmware: bios does not exist on arm64: QEMU's virt board and Proxmox VE's "
                      "aarch64 guests boot UEFI only",
                      "drop spec.image.firmware (arm64 images boot UEFI) or set it to uefi")
