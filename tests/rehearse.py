"""Rehearse a rendered cluster's first boot: python tests/rehearse.py OUTPUT_DIR

Run from the repository root, as root (namespaces, mounts, chroot), with no VM and no network.
The init node first, then every joining node, each in its own throwaway root and network
namespace, over one simulated cluster that faithful stand-ins of kubeadm, the kubelet, kubectl
and the API server share (tests/standins/); then the checks only the whole cluster shows.
Prints one line per node and step; exits 0 when every node reached the first-boot sentinel
and the cluster checks pass, 1 with `NODE: STEP: reason` at the first failure, 2 on bad usage.
The folder is taken as it is on disk (its manifest is not checked: the seeds are rehearsed).
See the README's "Rehearsal" section for what it proves and what it cannot.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab.driver import rehearse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tests/rehearse.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("output_dir", type=Path, help="a folder bakery render wrote")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="keep the nodes' roots under DIR to look at")
    args = ap.parse_args(argv)
    if not (args.output_dir / "nodes").is_dir():
        ap.error(f"{args.output_dir} has no nodes/ folder: not a folder bakery render wrote")
    result = rehearse(args.output_dir, keep=args.keep)
    print(result.lines[-1])
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
