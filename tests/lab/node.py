"""Inside one node's namespaces (started by the driver under `ip netns exec NODE unshare
--mount`): mount the node's root (its own /usr over the host's, /dev, /proc with the image's
sysctls and no swap, the lab's files), chroot into it and run cloud-init's runcmd script as
cloud-init's final stage would. Its output is the node's console."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def bind(src: str, dst: str, ro: bool = False) -> None:
    mount("--bind", src, dst)
    if ro:
        mount("-o", "remount,bind,ro", dst)


def main(spec_file: str) -> int:
    with open(spec_file) as f:
        spec = json.load(f)
    root = spec["root"]
    mount("--make-rprivate", "/")
    mount("-t", "overlay", "overlay", "-o",
          f"lowerdir=/usr,upperdir={spec['usrUpper']},workdir={spec['usrWork']}", f"{root}/usr")
    mount("--rbind", "/dev", f"{root}/dev")
    for name, (src, ro) in spec["binds"].items():
        dst = f"{root}/{name.lstrip('/')}"
        os.makedirs(dst, exist_ok=True)
        bind(src, dst, ro)
    mount("-t", "proc", "proc", f"{root}/proc")
    bind(spec["procSys"], f"{root}/proc/sys", ro=True)
    bind(spec["swaps"], f"{root}/proc/swaps", ro=True)
    os.chroot(root)
    os.chdir("/")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    if spec["boot"] == 1:  # cloud-init's final stage runs runcmd once per instance
        return subprocess.run(["/bin/sh", "/var/lib/cloud/instance/scripts/runcmd"], env=env,
                              stdout=sys.stdout, stderr=subprocess.STDOUT).returncode
    # a later boot: systemd starts the site's enabled units (cloud-init does not run runcmd again)
    rc = 0
    wants = "/etc/systemd/system/multi-user.target.wants"
    for unit in sorted(os.listdir(wants)):
        if os.path.isfile(f"/etc/systemd/system/{unit}"):
            rc |= subprocess.run(["systemctl", "start", unit], env=env, stdout=sys.stdout,
                                 stderr=subprocess.STDOUT).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
