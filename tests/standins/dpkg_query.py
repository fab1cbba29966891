"""STAND-IN for dpkg-query in the rehearsal: ``-W -f=FORMAT NAME...`` shows the packages the bake
installed (60-site.sh: spec.image.extraPackages), as recorded in node.json. dpkg-query's
contract (dpkg's query.c, showpackages): each installed package printed with the format
(``${Package}``, ``${Version}``, ``${db:Status-Abbrev}`` and ``\\n`` here); a name that matches
none is reported on stderr and the exit status is 1, after the others are printed."""
from __future__ import annotations

import sys

import simcluster as sim

FIELDS = ("${Package}", "${Version}", "${db:Status-Abbrev}")


def show(fmt: str, names: list[str], packages: dict[str, str]) -> tuple[str, str, int]:
    out, err, rc = [], [], 0
    for name in names:
        if name not in packages:
            err.append(f"dpkg-query: no packages found matching {name}\n")
            rc = 1
            continue
        line = fmt.replace("${Package}", name).replace("${Version}", packages[name])
        out.append(line.replace("${db:Status-Abbrev}", "ii ").replace("\\n", "\n"))
    return "".join(out), "".join(err), rc


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "-W" or not args[1].startswith("-f="):
        print("stand-in dpkg-query: only -W -f=FORMAT NAME...", file=sys.stderr)
        sys.exit(2)
    fmt = args[1][len("-f="):]
    unknown = fmt
    for field in FIELDS:
        unknown = unknown.replace(field, "")
    if "${" in unknown:
        print(f"stand-in dpkg-query: unknown field in {fmt!r}", file=sys.stderr)
        sys.exit(2)
    out, err, rc = show(fmt, args[2:], sim.node().get("packages", {}))
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(rc)
