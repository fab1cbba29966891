"""STAND-IN for sleep in the cluster rehearsal: time is simulated, so a sleep returns at once.
Nothing else changes while a node rehearses (nodes run one after another), so a first boot that
keeps waiting waits for something that will not come: after 10 sleeps on one node the stand-in
records that as the node's failure, and the lab names the wait the script was in."""
from __future__ import annotations

import sys

import simcluster as sim

LIMIT = 10


def main(argv: list[str]) -> None:
    name = sim.node()["name"]
    with sim.state() as st:
        sleeps = st.setdefault("sleeps", {})
        sleeps[name] = sleeps.get(name, 0) + 1
        count = sleeps[name]
    if count > LIMIT:
        sim.violation("wait", f"kept waiting ({count} sleeps, {' '.join(argv)}s the last); nothing else runs while "
                              "a node rehearses, so what it waits for never comes")


if __name__ == "__main__":
    main(sys.argv[1:])
