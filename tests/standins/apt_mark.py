"""STAND-IN for apt-mark in the rehearsal: ``showhold`` lists the packages the bake held
(40-kubernetes.sh: apt-mark hold kubelet kubeadm kubectl), as recorded in node.json."""
from __future__ import annotations

import sys

import simcluster as sim

if __name__ == "__main__":
    if sys.argv[1:] != ["showhold"]:
        print("stand-in apt-mark: only showhold", file=sys.stderr)
        sys.exit(1)
    print("\n".join(sim.node()["held"]))
