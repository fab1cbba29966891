"""The command line. Heavy modules (jsonschema, jinja2, cryptography) are imported inside
commands, so `bakery --version` and `--help` stay close to Python's start-up time."""
from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import EXIT_ENV, EXIT_INPUT, BakeryError, InputError, printable

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def say(text: str, err: bool = False) -> None:
    """One line for the terminal: paths and values in it may hold any character, so every one
    that is not printable is written as an escape (errors.printable)."""
    click.echo(printable(text), err=err)


def _fail(exc: BakeryError) -> None:
    # diagnostics carry their own "error[check]:" prefix; environment failures get one
    if isinstance(exc, InputError):
        for d in exc.diagnostics:
            say(str(d), err=True)
    else:
        say(f"error: {exc}", err=True)
    if isinstance(exc, InputError):
        n = len([d for d in exc.diagnostics if d.severity == "error"]) or len(exc.diagnostics)
        if n > 1:
            say(f"{n} problems; nothing was written.", err=True)
    sys.exit(exc.exit_code)


def _finite(value: float) -> float:
    """click's FloatRange lets nan through (every comparison with nan is false)."""
    import math

    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BakeryError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            from ..fsafe import completed

            done = completed()
            if not done:
                say("interrupted; nothing was changed", err=True)
            else:  # the interruption came after a commit: show what completed, as its report would
                say("interrupted after this completed:", err=True)
                for line in done:
                    say(line)
            sys.exit(130)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            say(f"error: {exc.strerror or exc}{where}; check the path, permissions and free space", err=True)
            sys.exit(EXIT_ENV)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="bakery", message="%(prog)s %(version)s")
def cli() -> None:
    """Render Packer templates and per-node cloud-init for a kubeadm cluster from one
    cluster.yaml.

    \b
    Start here:
      bakery init mylab            # write an example cluster.yaml
      bakery validate mylab/cluster.yaml
      bakery render mylab/cluster.yaml
    Exit status: 0 ok, 1 the environment failed, 2 bad input.
    """


CLUSTER_ARG = click.argument("cluster", metavar="CLUSTER.yaml", type=click.Path(dir_okay=True, path_type=str))


@cli.command()
@CLUSTER_ARG
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--output", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one document on stdout, for CI.")
def validate(cluster: str, strict: bool, output: str) -> None:
    """Check CLUSTER.yaml against the schema and the semantic checks."""
    from ..spec.pipeline import check_file

    try:
        loaded = check_file(cluster)
        diags = loaded.report.diagnostics
    except InputError as exc:
        diags = exc.diagnostics
    errors = [d for d in diags if d.severity == "error"]
    failed = bool(errors) or (strict and bool(diags))
    if output == "json":
        import json

        click.echo(json.dumps({"file": cluster, "valid": not failed,
                               "errors": len(errors), "warnings": len(diags) - len(errors),
                               "diagnostics": [d.as_dict() for d in diags]}, indent=2))
    else:
        for d in diags:
            say(str(d), err=True)
        if failed:
            say(f"{cluster}: invalid ({_count(len(errors), 'error')}, "
                       f"{_count(len(diags) - len(errors), 'warning')})", err=True)
        else:
            warn = f", {_count(len(diags), 'warning')}" if diags else ""
            say(f"{cluster}: valid ({_count(len(loaded.doc.data['spec']['nodes']), 'node')}{warn})")
    sys.exit(EXIT_INPUT if failed else 0)


@cli.command()
@CLUSTER_ARG
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder. Default: outputs/<metadata.name>/ under the current folder.")
@click.option("--secrets", "secrets_path", envvar="BAKERY_SECRETS", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="Secrets bundle to use or create (env BAKERY_SECRETS). Default: <out>/secrets.yaml.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--rotate-token", is_flag=True, help="Make a new bootstrap token and print how to register it.")
@click.option("--check", "check_only", is_flag=True,
              help="Render to a temporary folder and exit 1 if anything differs from what is on disk.")
@click.option("--upgrade-done", is_flag=True,
              help="Every node runs the new Kubernetes version: drop the upgrade plan (UPGRADE.md, upgrade.json).")
@click.option("--lock-timeout", type=click.FloatRange(min=0, max=86400), default=60.0, show_default=True,
              callback=lambda ctx, param, value: _finite(value),
              help="Seconds to wait for another render of the same output folder or bundle.")
def render(cluster: str, out: str | None, secrets_path: str | None, strict: bool, rotate_token: bool,
           check_only: bool, upgrade_done: bool, lock_timeout: float) -> None:
    """Write Packer templates and per-node cloud-init for CLUSTER.yaml."""
    from ..render import render_cluster
    from ..spec.pipeline import load_cluster

    model, report = load_cluster(cluster, strict=strict)
    for d in report.warnings:
        say(str(d), err=True)
    result = render_cluster(model, out=out, secrets_path=secrets_path, rotate_token=rotate_token,
                            check_only=check_only, lock_timeout=lock_timeout, upgrade_done=upgrade_done)
    _report(result)


def _report(result) -> None:
    for line in result.warnings:
        say(line, err=True)
    for line in result.messages:
        say(line)
    sys.exit(result.exit_code)


@cli.command()
def schema() -> None:
    """Print the JSON schema of cluster.yaml."""
    from ..resources import schema_text

    click.echo(schema_text(), nl=False)


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=str))
@click.option("--force", is_flag=True, help="Overwrite an existing cluster.yaml.")
def init(directory: str, force: bool) -> None:
    """Write an example cluster.yaml into DIRECTORY (default: here), with your SSH public key
    (~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub, the first found) if there is one."""
    import os
    from pathlib import Path

    from .. import fsafe
    from ..spec import scaffold

    target = Path(directory) / "cluster.yaml"
    if target.is_symlink() and not force:  # dangling or not: never written through without --force
        raise InputError(f"{target} is a symbolic link (to {os.readlink(target)}); pass --force to write the "
                         "example where it points", check="init-exists")
    if target.exists() and not force:
        raise InputError(f"{target} exists; pass --force to overwrite it", check="init-exists")
    key = scaffold.find_public_key(Path.home())
    example = scaffold.cluster_yaml(key)
    fsafe.write_atomic(target, example.encode(), 0o644, through_links=True)
    for line in scaffold.describe(key):
        say(line)
    say(f"wrote {target}; next: bakery validate {target}")


@cli.group()
def secrets() -> None:
    """Inspect the secrets bundle."""


@secrets.command("check")
@CLUSTER_ARG
@click.option("--secrets", "secrets_path", envvar="BAKERY_SECRETS", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="The bundle (env BAKERY_SECRETS). Default: outputs/<metadata.name>/secrets.yaml.")
def secrets_check(cluster: str, secrets_path: str | None) -> None:
    """Report the expiry of every certificate and the token's lifetime; warn 90 days before a
    certificate ends; exit 2 if the bundle is unusable or a certificate ends within 30 days
    (`bakery secrets renew` reissues the admin certificate). Prints no secret."""
    import datetime

    from ..output.layout import default_out
    from ..pki import bundle as sec
    from ..pki import store
    from ..spec.pipeline import load_cluster

    model, _ = load_cluster(cluster)
    loc = store.locate(default_out(model), secrets_path)
    path = loc.path
    if not loc.real.exists():
        raise InputError(f"no secrets bundle at {path}; run `bakery render` first or pass --secrets",
                         check="secrets-bundle")
    data = store.read(loc.real)
    try:
        rows = sec.expiry_report(data)
    except Exception:  # noqa: BLE001 - a bundle that is not even YAML: parse() below says why
        rows = []
    for name, cn, end, days in rows:
        say(f"{name:14} {cn:22} expires {end} ({days} days)")
    now = datetime.datetime.now(datetime.UTC)
    bundle, _, notes = store.obtain(model, loc, rotate_token=False, create=False, now=now)
    for note in notes:
        say(note)
    ttl = "never expires" if model.token_ttl_seconds == 0 else f"expires {model.token_ttl} after it is registered"
    made = f", made {bundle.token_created.replace('T', ' ')}" if bundle.token_created else ""
    say(f"{'token':14} {bundle.token_id + '.****':22} {ttl}{made}")
    for name, _cn, end, days in rows:
        if days < sec.WARN_REMAINING.days:
            fix = (sec.RENEW_HINT if name == "admin" else
                   "bakery never rotates a CA: plan a new cluster, or follow Kubernetes' manual rotation of CA "
                   "certificates (kubernetes.io/docs/tasks/tls/manual-rotation-of-ca-certificates)")
            say(f"warning[cert-expiring]: {name}.certificate expires on {end}, in {days} days; {fix}", err=True)
    if bundle.token_expired(model.token_ttl_seconds, now):
        say(f"warning[token-expired]: the token is past its TTL ({model.token_ttl}) on a running cluster; "
            "render with --rotate-token before adding a node", err=True)
    say("kubeadm's own certificates on each control-plane node (API server, etcd, front-proxy client, the "
        "kubeconfigs in /etc/kubernetes) expire one year after the node's first boot; every kubelet rotates its "
        "client certificate itself. Replacing or upgrading a control-plane node renews them; so does `kubeadm "
        "certs renew all` on it, followed by a restart of its control-plane static pods (`kubeadm certs "
        "check-expiration` lists them)")
    say(f"{path}: usable")


@secrets.command("renew")
@CLUSTER_ARG
@click.option("--secrets", "secrets_path", envvar="BAKERY_SECRETS", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="The bundle (env BAKERY_SECRETS). Default: <out>/secrets.yaml.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder. Default: outputs/<metadata.name>/ under the current folder.")
@click.option("--lock-timeout", type=click.FloatRange(min=0, max=86400), default=60.0, show_default=True,
              callback=lambda ctx, param, value: _finite(value),
              help="Seconds to wait for another render of the same output folder or bundle.")
def secrets_renew(cluster: str, secrets_path: str | None, out: str | None, lock_timeout: float) -> None:
    """Reissue the bundle's leaf credentials (the admin client certificate, with a new key)
    from the cluster's CAs and re-render, so that admin.conf carries it. CAs, the
    service-account key and the token stay; like every render, all or nothing."""
    from ..render import render_cluster
    from ..spec.pipeline import load_cluster

    model, report = load_cluster(cluster)
    for d in report.warnings:
        say(str(d), err=True)
    _report(render_cluster(model, out=out, secrets_path=secrets_path, renew=True, lock_timeout=lock_timeout))


def main() -> None:
    cli(prog_name="bakery")
