"""The hypervisors bakery bakes for. Each one's knowledge is in its own module: its Packer
builder name, plugin and version, what its build needs and makes, where its artifact lands.
PROVIDERS lists them once; everything else asks here. Constants only: `bakery --help` imports
this."""
from __future__ import annotations

from . import proxmox, qemu, virtualbox

PROVIDERS = (virtualbox, proxmox, qemu)
BUILDERS = tuple(p.BUILDER for p in PROVIDERS)
BY_BUILDER = {p.BUILDER: p for p in PROVIDERS}
