"""`bakery build`: running Packer on a rendered tree and following its machine-readable output."""
