"""Proxmox VE: packer-plugin-proxmox's proxmox-iso builder makes a template through the API;
proxmox/deploy.sh or `bakery deploy proxmox` clone it into one VM per node."""
from __future__ import annotations

from ..templating import hcl_string

BUILDER = "proxmox-iso"
PLUGIN = "proxmox"
PLUGIN_SOURCE = "github.com/hashicorp/proxmox"
PLUGIN_VERSION = "1.2.4"  # >= 1.2 has the boot_iso block
NOTES = "the Proxmox VE API (PKR_VAR_proxmox_token, spec.image.proxmox); makes a template"

# The VM's firmware, by spec.image.firmware (config.go `bios`: "seabios" (default) or "ovmf").
# OVMF keeps its variables on an EFI disk, which `efi_config` makes on the template's disk
# storage (efi_storage_pool; "This needs to be set if you use ovmf uefi boot"), 4 MB variables
# (efi_type's default, matching current OVMF builds) and no pre-enrolled Microsoft keys:
# Secure Boot stays off, as on the other builders (it would also lock the kernel down, which
# eBPF-based pod networks mind). Clones copy the EFI disk with the template.
BIOS = {"bios": "seabios", "uefi": "ovmf"}
EFI_TYPE = "4m"


def cd_bus(arch: str) -> str:
    """The bus of the template's and clones' CD drives and cloud-init drive: IDE, the plugin's
    default, on amd64; SCSI on arm64, whose virt machine has no IDE controller (qemu-server:
    "kvm: -device ide-cd,bus=ide.1 ... Bus 'ide.1' not found", packer-plugin-proxmox #187,
    #263)."""
    return "scsi" if arch == "arm64" else "ide"


def source_attributes(arch: str, firmware: str) -> list[tuple[str, str]]:
    """The proxmox-iso source's firmware and architecture attributes (name, HCL expression)."""
    attrs = [("bios", hcl_string(BIOS[firmware]))]
    if arch == "arm64":
        attrs.append(("cloud_init_disk_type", hcl_string(cd_bus(arch))))
    return attrs


def efi_config(firmware: str) -> list[tuple[str, str]]:
    """The efi_config block's attributes, empty under BIOS."""
    if firmware != "uefi":
        return []
    return [("efi_storage_pool", "var.proxmox_disk_storage"), ("efi_type", hcl_string(EFI_TYPE)),
            ("pre_enrolled_keys", hcl_string(False))]


def clone_cd_slots(arch: str) -> tuple[str, ...]:
    """The drive slots a clone's seed CD (or its cloud-init drive) takes, the first free one:
    on amd64 IDE (ide2 is the plugin's cloud-init slot), then SATA; on arm64 the last SCSI
    slots (qemu-server: scsi0 to scsi30), as the virt machine has no IDE."""
    if cd_bus(arch) == "scsi":
        return ("scsi30", "scsi29", "scsi28")
    return ("ide2", "ide3", "ide1", "ide0", "sata5", "sata4")
