"""Semantic checks of the image's Proxmox ISO source (issue 19). Registered
with the others (``checkbase.check``); IDs are listed in the README."""
from __future__ import annotations

from collections.abc import Iterator

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

