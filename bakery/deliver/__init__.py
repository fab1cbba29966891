"""Taking a rendered tree to running VMs: seed ISOs, the VirtualBox and Proxmox hand-off scripts,
the README (`bakery explain`), and the Proxmox API deploy."""
