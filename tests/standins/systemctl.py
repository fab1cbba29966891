"""STAND-IN for systemctl in the rehearsal (bakery's tests; not systemd): the calls cloud-init's
runcmd and the node check make, with systemd's rules for them:

- ``daemon-reload``; ``enable UNIT`` needs the unit file (/etc/systemd/system,
  /usr/local/lib/systemd/system, /usr/lib/systemd/system) and links it into its
  ``WantedBy=`` target; ``is-enabled UNIT`` answers from those links;
- ``start UNIT`` runs a ``Type=oneshot`` service: skipped (exit 0) when a
  ``ConditionPathExists=`` fails, otherwise ``ExecStart=`` with the unit's ``Environment=`` and
  systemd's default PATH, in the root folder, its output on the console; a non-zero exit
  fails the start as systemd does ("Job for UNIT failed ...");
- ``restart UNIT`` (a running service: containerd) needs the unit file; its drop-ins
  (``UNIT.d/*.conf`` in the unit folders) must parse as systemd reads them
  (contracts.unit_environment) and must not have changed since the last ``daemon-reload``:
  systemd restarts a unit with the configuration it loaded, only warning that the files
  changed on disk, so a drop-in written after boot without a reload is not in effect (a
  violation here: stricter than systemd's warning). The environment the unit restarted with
  is kept in the shared state (``units``: node -> unit -> variables) for the tests;
- ``list-units --type=swap`` lists none (the image has no swap unit).
"""
from __future__ import annotations

import configparser
import shlex
import subprocess
import sys

import simcluster as sim
from contracts import UnitSyntaxError, unit_environment

UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RELOADED = "/run/systemd/.standin-daemon-reload"  # when systemd last loaded the unit files


def drop_ins(name: str) -> list:
    """UNIT.d/*.conf of every unit folder, in systemd's order (by file name)."""
    found = {}
    for d in reversed(UNIT_DIRS):  # an earlier folder's file of the same name wins
        folder = sim.path(f"{d}/{name}.d")
        if folder.is_dir():
            for f in folder.glob("*.conf"):
                found[f.name] = f
    return [found[k] for k in sorted(found)]


def restart(name: str) -> int:
    p = unit_file(name)
    if p is None:
        print(f"Failed to restart {name}: Unit {name} not found.", file=sys.stderr)
        return 5
    reloaded = sim.path(RELOADED)
    env: dict[str, str] = {}
    for f in [p, *drop_ins(name)]:
        if f != p and (not reloaded.exists() or f.stat().st_mtime_ns > reloaded.stat().st_mtime_ns):
            sim.violation("systemctl", f"systemctl restart {name}: {f.relative_to(sim.ROOT)} changed on disk "
                          "since the last daemon-reload; the unit restarts without it",
                          printed=f"Warning: The unit file, source configuration file or drop-ins of {name} "
                          "changed on disk. Run 'systemctl daemon-reload' to reload units.")
        try:
            env.update(unit_environment(f.read_text()))
        except UnitSyntaxError as exc:
            sim.violation("systemctl", f"{f.relative_to(sim.ROOT)}: {exc}")
    node = sim.node()["name"]
    with sim.state() as st:
        st.setdefault("units", {}).setdefault(node, {})[name] = env
    return 0


def unit_file(name: str):
    for d in UNIT_DIRS:
        p = sim.path(f"{d}/{name}")
        if p.is_file():
            return p
    return None


def parse(p) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(p.read_text())
    return cp


def main(argv: list[str]) -> int:
    argv = [a for a in argv if a not in ("--quiet", "-q", "--no-block")]
    verb, args = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "daemon-reload":
        mark = sim.path(RELOADED)
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text("")
        return 0
    if verb == "restart" and len(args) == 1:
        return restart(args[0] if "." in args[0] else args[0] + ".service")
    if verb in ("enable", "start", "is-enabled") and len(args) == 1:
        name = args[0] if "." in args[0] else args[0] + ".service"
        p = unit_file(name)
        if p is None:
            print(f"Failed to {verb} unit: Unit file {name} does not exist.", file=sys.stderr)
            return 1
        cp = parse(p)
        wanted = cp.get("Install", "WantedBy", fallback="").split()
        if verb == "is-enabled":
            on = any(sim.path(f"/etc/systemd/system/{t}.wants/{name}").exists() for t in wanted)
            print("enabled" if on else "disabled")
            return 0 if on else 1
        if verb == "enable":
            for t in wanted:
                link = sim.path(f"/etc/systemd/system/{t}.wants/{name}")
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.is_symlink():
                    link.symlink_to(str(p).removeprefix(str(sim.ROOT).rstrip("/")))
            return 0
        for cond in cp.get("Unit", "ConditionPathExists", fallback="").split():
            neg, target = cond.startswith("!"), cond.lstrip("!")
            if sim.path(target).exists() == neg:
                return 0  # condition failed: the unit is skipped, the start succeeds
        if cp.get("Service", "Type", fallback="simple") != "oneshot":
            print(f"stand-in systemctl: {name} is not a oneshot service", file=sys.stderr)
            return 1
        env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
        for item in shlex.split(cp.get("Service", "Environment", fallback="")):
            k, _, v = item.partition("=")
            env[k] = v
        cmd = shlex.split(cp.get("Service", "ExecStart").lstrip("-@+!"))
        rc = subprocess.run(cmd, env=env, cwd="/", stdout=sys.stderr).returncode
        if rc != 0:
            print(f"Job for {name} failed because the control process exited with error code.", file=sys.stderr)
            return 1
        return 0
    if verb == "list-units":
        return 0
    print(f"stand-in systemctl: {' '.join(argv)} is not a call bakery makes", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
