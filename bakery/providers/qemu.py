"""QEMU: packer-plugin-qemu's qemu builder makes a qcow2 disk image."""

BUILDER = "qemu"
PLUGIN = "qemu"
PLUGIN_SOURCE = "github.com/hashicorp/qemu"
PLUGIN_VERSION = "1.1.4"
NOTES = "QEMU (with /dev/kvm, or qemu_accelerator=tcg); makes a qcow2"
