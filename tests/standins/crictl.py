"""STAND-IN for crictl against the node's containerd (bakery's tests; not cri-tools): the
calls the node check makes. ``--runtime-endpoint`` must be the socket that exists;
``info`` reports the runtime ready and runc's SystemdCgroup and the sandbox image from the
node's /etc/containerd/config.toml (as containerd 2.x's CRI status does: the config version 3
keys); ``images -o json`` lists the node's runtime images (the bake's pulls)."""
from __future__ import annotations

import json
import sys
import tomllib

import kubelet
import simcluster as sim


def main(argv: list[str]) -> None:
    endpoint = None
    words = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--runtime-endpoint", "-r", "-o", "--output"):
            if argv[i] in ("--runtime-endpoint", "-r"):
                endpoint = argv[i + 1]
            i += 2
            continue
        words.append(argv[i])
        i += 1
    if endpoint is None or not kubelet.cri_socket_present(endpoint if "://" in endpoint else "unix://" + endpoint):
        print(f"validate service connection: {endpoint}: no such file or directory", file=sys.stderr)
        sys.exit(1)
    if words == ["info"]:
        driver = kubelet.containerd_cgroup_driver()
        cfg = tomllib.loads(sim.path("/etc/containerd/config.toml").read_text())
        images = (cfg.get("plugins") or {}).get("io.containerd.cri.v1.images") or {}
        legacy = (cfg.get("plugins") or {}).get("io.containerd.grpc.v1.cri") or {}
        sandbox = (images.get("pinned_images") or {}).get("sandbox") or legacy.get("sandbox_image")
        print(json.dumps({"status": {"conditions": [{"type": "RuntimeReady", "status": True},
                                                    {"type": "NetworkReady", "status": False}]},
                          "config": {"containerd": {"runtimes": {"runc": {"options": {
                              "SystemdCgroup": driver == "systemd"}}}},
                              "sandboxImage": sandbox}}))
    elif words == ["images"]:
        print(json.dumps({"images": [{"repoTags": [i]} for i in sorted(sim.images_here())]}))
    else:
        print(f"stand-in crictl: {' '.join(words)} is not a call bakery makes", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
