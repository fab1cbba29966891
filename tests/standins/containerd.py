"""STAND-IN for containerd's command line in the rehearsal: ``config dump`` prints the node's
/etc/containerd/config.toml (the effective configuration, defaults aside)."""
from __future__ import annotations

import sys

import simcluster as sim

if __name__ == "__main__":
    if sys.argv[1:] != ["config", "dump"]:
        print("stand-in containerd: only config dump", file=sys.stderr)
        sys.exit(1)
    print(sim.path("/etc/containerd/config.toml").read_text())
