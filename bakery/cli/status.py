"""`bakery status`: the nodes of the running cluster, read through admin.conf. bakery.cli adds
COMMANDS to the group; click only at module level, everything else inside the command."""
from __future__ import annotations

import sys

import click

from .commands import CLUSTER_ARG, say

# Seconds between polls of --wait, and each request's timeout; the environment variable
# shortens the interval for tests.
POLL_ENV = "BAKERY_STATUS_POLL_SECONDS"
POLL_SECONDS = 5.0
REQUEST_TIMEOUT = 10.0


def _wait_seconds(ctx, param, value: str | None) -> float:
    from ..spec.durations import is_duration, parse_duration

    if value is None:
        return 0.0
    if not is_duration(value):
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 10m, 1h30m or 90s")
    return float(parse_duration(value))


@click.command()
@CLUSTER_ARG
@click.option("--kubeconfig", "kubeconfig", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The kubeconfig to use. Default: admin.conf of the output folder.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder. Default: outputs/<metadata.name>/ under the current folder.")
@click.option("--wait", "wait", metavar="DURATION", default=None, callback=_wait_seconds,
              help="Poll until every node is Ready or DURATION (10m, 1h30m) has passed.")
def status(cluster: str, kubeconfig: str | None, out: str | None, wait: float) -> None:
    """One line per node of CLUSTER.yaml as the API server sees it: Ready, NotReady or missing,
    with its kubelet version; then the cluster's other nodes. Exit 0 when every node of
    CLUSTER.yaml is Ready, 1 otherwise or when the API server cannot be asked."""
    import os
    from pathlib import Path

    from ..deliver import kubeapi
    from ..deliver import status as st
    from ..errors import InputError
    from ..output.layout import default_out
    from ..spec.pipeline import load_cluster

    interval = POLL_SECONDS
    if os.environ.get(POLL_ENV):
        try:
            interval = float(os.environ[POLL_ENV])
        except ValueError:
            interval = -1.0
        if not 0.01 <= interval <= 3600:
            raise InputError(f"{POLL_ENV}: {os.environ[POLL_ENV]!r} is not a number of seconds from 0.01 to 3600",
                             check="status-poll")
    model, report = load_cluster(cluster)
    for d in report.warnings:
        say(str(d), err=True)
    path = kubeconfig or str((Path(out) if out else default_out(model)) / "admin.conf")
    client = kubeapi.Client(kubeapi.load_kubeconfig(path), timeout=REQUEST_TIMEOUT)
    names = [n.name for n in model.nodes]
    live = wait > 0 and sys.stderr.isatty()
    shown = {"live": False}

    def on_poll(snap, error, elapsed):
        if wait <= 0:
            return
        left = max(0, int(wait - elapsed))
        text = (f"waiting: {snap.summary()}" if snap else f"waiting: {error}") + f" ({left}s left)"
        if live:
            click.echo("\r\x1b[2K" + _escape(text)[:200], err=True, nl=False)
            shown["live"] = True
        else:
            say(f"[{int(elapsed):>5}s] {text}", err=True)

    try:
        snap = st.poll(lambda: client.get(st.NODES_PATH), names, wait, interval, on_poll)
    finally:
        if shown["live"]:
            click.echo("", err=True)
    for row in snap.rows:
        say(row.line())
    if snap.ready:
        say(f"all {len(names)} nodes Ready")
        return
    others = ", ".join(f"{r.name} ({r.state})" for r in snap.not_ready)
    say(f"not Ready: {others}" + (f" after {wait:g}s" if wait > 0 else ""))
    sys.exit(1)


def _escape(text: str) -> str:
    from ..errors import printable

    return printable(text)


COMMANDS = (status,)
