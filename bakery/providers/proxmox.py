"""Proxmox VE: packer-plugin-proxmox's proxmox-iso builder makes a template through the API;
proxmox/deploy.sh or `bakery deploy proxmox` clone it into one VM per node."""

BUILDER = "proxmox-iso"
PLUGIN = "proxmox"
PLUGIN_SOURCE = "github.com/hashicorp/proxmox"
PLUGIN_VERSION = "1.2.4"  # >= 1.2 has the boot_iso block
NOTES = "the Proxmox VE API (PKR_VAR_proxmox_token, spec.image.proxmox); makes a template"
