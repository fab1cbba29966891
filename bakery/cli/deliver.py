"""Commands that take rendered outputs further (issue 5): build, deploy, explain. bakery.cli
adds COMMANDS to the group; this module does not import it.
Keep imports light: click only at module level; everything else inside the commands, so
`bakery --version` stays fast."""
from __future__ import annotations

import sys

import click

from ..providers import BUILDERS, proxmox
from .commands import CLUSTER_ARG, say

OUT_OPTION = click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
                          help="Output folder. Default: outputs/<metadata.name>/ under the current folder.")
SECRETS_OPTION = click.option("--secrets", "secrets_path", envvar="BAKERY_SECRETS",
                              type=click.Path(dir_okay=False, path_type=str), default=None,
                              help="Secrets bundle (env BAKERY_SECRETS). Default: <out>/secrets.yaml.")


def _load(path: str):
    from ..spec.pipeline import load_cluster

    model, report = load_cluster(path)
    for d in report.warnings:
        say(str(d), err=True)
    return model


def _ensure_rendered(model, out: str | None, secrets_path: str | None, plan=None):
    """Render when the output folder is missing or differs from a fresh render (with the
    command's image plan: computed once per command)."""
    from ..errors import InputError
    from ..output.layout import default_out
    from ..render import render_cluster

    try:
        stale = render_cluster(model, out=out, secrets_path=secrets_path, check_only=True,
                               plan=plan).exit_code != 0
    except InputError:  # nothing rendered there yet
        stale = True
    if stale:
        result = render_cluster(model, out=out, secrets_path=secrets_path, plan=plan)
        for line in result.messages:
            say(line, err=True)
    from pathlib import Path

    return Path(out).absolute() if out else default_out(model)


@click.command()
@CLUSTER_ARG
@click.option("--only", type=click.Choice(BUILDERS), default=None,
              help="Bake with this builder only. Default: every builder in spec.image.builders.")
@click.option("--force", is_flag=True, help="Build even when an image with the same bake fingerprint exists.")
@OUT_OPTION
@SECRETS_OPTION
def build(cluster: str, only: str | None, force: bool, out: str | None, secrets_path: str | None) -> None:
    """Bake the node image with Packer (renders first when needed).

    \b
    Needs packer on PATH (or BAKERY_PACKER), PKR_VAR_build_password, and for proxmox-iso
    PKR_VAR_proxmox_token (or PROXMOX_TOKEN_SECRET). Artifacts and Packer's manifest.json go
    to <out>-images/ beside the output folder. Ctrl-C stops Packer cleanly.
    """
    import os

    from .. import fsafe
    from ..build import runner as packer_run
    from ..errors import EnvError, InputError
    from ..image import packer
    from ..output.layout import images_dir
    from ..plan import image_plan

    model = _load(cluster)
    wanted = [only] if only else list(model.image.builders)
    if only and only not in model.image.builders:
        raise InputError(f"--only {only}: {cluster} has no such builder (spec.image.builders: "
                         f"{', '.join(model.image.builders)})", check="build-only")
    plan = image_plan(model)
    dest = _ensure_rendered(model, out, secrets_path, plan)
    images = images_dir(dest)
    recorded = packer_run.recorded_builds(images / "manifest.json", plan.fingerprint)
    todo = wanted if force else [b for b in wanted if b not in recorded]
    for b in wanted:
        if b not in todo:
            say(f"{b}: {plan.image_name} is built already ({recorded[b].get('artifact_id')}); "
                       "--force builds it again")
    if not todo:
        return
    env = dict(os.environ)
    required = []
    if proxmox.BUILDER in todo:
        if not env.get("PKR_VAR_proxmox_token") and env.get("PROXMOX_TOKEN_SECRET"):
            env["PKR_VAR_proxmox_token"] = env["PROXMOX_TOKEN_SECRET"]
        required.append(("PKR_VAR_proxmox_token", f"secret of the API token {model.image.proxmox.token_id}"))
        if not model.image.proxmox.url:
            required.append(("PKR_VAR_proxmox_url", "the API URL, since image.proxmox.url is not set"))
    folder = dest / "packer"
    binary, version = packer_run.preflight(
        folder, env=env, required_env=required, required_version=packer.required_version(),
        variables=[v.name for v in packer.variables(model, plan) if not v.has_default])
    fsafe.makedirs(images)
    say(f"baking {plan.image_name} with {', '.join(todo)} (Packer {'.'.join(map(str, version))}); "
               f"artifacts in {images}", err=True)
    packer_run.init(binary, folder, version, env=env)
    try:
        result = _build_with_progress(packer_run, binary, folder, todo, force, {"output_dir": str(images)}, env)
    except packer_run.Interrupted as exc:
        say(f"{exc}; nothing was recorded", err=True)
        sys.exit(130)
    if not result.ok:
        raise EnvError(f"packer build failed: {result.failure()} (full log: rerun with PACKER_LOG=1)")
    for a in result.tracker.artifacts:
        where = ", ".join(str(images / p) if not os.path.isabs(p) else p for p in a.files) or a.id
        say(f"{a.build}: {a.string or a.id} -> {where}")


def _build_with_progress(packer_run, binary, folder, builders, force, variables, env):
    """packer build with a live table (builder, state, step, elapsed) on a terminal, plain
    step lines otherwise (CI logs)."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner
    from rich.table import Table

    console = Console(stderr=True)
    start = time.monotonic()

    def table(tracker):
        t = Table(box=None, show_header=True, header_style="bold")
        for col in ("build", "", "step", "elapsed"):
            t.add_column(col)
        now = time.monotonic()
        for b in tracker.builds.values():
            mark = {"done": "[green]done", "failed": "[red]failed", "cancelled": "[yellow]cancelled"}.get(b.state)
            t.add_row(b.name, mark or Spinner("dots"), (b.error or b.step)[:100], f"{int(b.elapsed(now))}s")
        if not tracker.builds:
            t.add_row("packer", Spinner("dots"), "starting", f"{int(now - start)}s")
        return t

    if console.is_terminal:
        state = {"tracker": packer_run.Tracker()}
        with Live(get_renderable=lambda: table(state["tracker"]), console=console, refresh_per_second=4,
                  transient=False):
            def on_event(ev, tracker):
                state["tracker"] = tracker
                if ev is not None and ev.type == "ui" and ev.ui_level == "error":
                    console.print(f"[red]{ev.text.strip()}")
            return packer_run.build(binary, folder, builders=builders, force=force, variables=variables,
                                    env=env, on_event=on_event)

    def on_plain(ev, tracker):
        if ev is None or ev.type != "ui":
            return
        text = ev.text.strip("\n")
        if text.startswith("==>") or ev.ui_level == "error" or text.startswith("Build '"):
            say(f"[{int(time.monotonic() - start):>5}s] {text}", err=True)

    return packer_run.build(binary, folder, builders=builders, force=force, variables=variables, env=env,
                            on_event=on_plain)


@click.group()
def deploy() -> None:
    """Create the cluster's VMs on a hypervisor from the baked image."""


@deploy.command("proxmox")
@CLUSTER_ARG
@OUT_OPTION
@SECRETS_OPTION
@click.option("--cicustom", is_flag=True,
              help="Give the seeds as cicustom snippets (already copied to the snippet storage, e.g. by "
                   "proxmox/deploy.sh) instead of uploading each node's seed as an ISO made from them.")
@click.option("--timeout", type=int, default=900, show_default=True, help="Seconds to wait for each task.")
@click.option("--node", "only", multiple=True, metavar="NAME",
              help="Deploy only this node (repeat for several). Default: every node.")
def deploy_proxmox_cmd(cluster: str, out: str | None, secrets_path: str | None, cicustom: bool,
                       timeout: int, only: tuple[str, ...]) -> None:
    """Clone the baked template into one VM per node through the Proxmox API.

    \b
    The API token's secret comes from PROXMOX_TOKEN_SECRET (its id from image.proxmox.tokenId);
    the URL from image.proxmox.url or PROXMOX_URL. Existing VMs are left alone.
    """
    import os

    from ..deliver import proxmox_api as deploy_proxmox
    from ..errors import EnvError, InputError

    model = _load(cluster)
    px = model.image.proxmox
    unknown = [n for n in only if n not in {node.name for node in model.nodes}]
    if unknown:
        raise InputError(f"{', '.join(unknown)}: not a node of cluster {model.name} (its nodes: "
                         f"{', '.join(n.name for n in model.nodes)})", check="deploy-node")
    if proxmox.BUILDER not in model.image.builders:
        raise InputError(f"{cluster} does not build for Proxmox (add proxmox-iso to spec.image.builders)",
                         check="deploy-proxmox")
    url = px.url or os.environ.get(deploy_proxmox.URL_ENV)
    if not url:
        raise EnvError(f"no Proxmox API URL: set image.proxmox.url in {cluster} or {deploy_proxmox.URL_ENV}")
    secret = os.environ.get(deploy_proxmox.TOKEN_ENV)
    if not secret:
        raise EnvError(f"missing credentials: set {deploy_proxmox.TOKEN_ENV} to the secret of the API token "
                       f"{px.token_id}")
    dest = _ensure_rendered(model, out, secrets_path)
    api = deploy_proxmox.connect(url, px.token_id, secret, verify=not px.insecure_skip_tls_verify)

    def report(name, message):
        say(f"{name}: {message}", err=True)

    results = deploy_proxmox.Deployer(model, dest, api, report=report, cicustom=cicustom,
                                      timeout=timeout).deploy(only=set(only) or None)
    for r in results:
        say(f"{r.name}: VM {r.vm_id} {r.state}{f' ({r.detail})' if r.detail else ''}")


@click.command()
@CLUSTER_ARG
@click.option("--markdown", is_flag=True, help="Print the Markdown README (with its Mermaid diagram) instead.")
def explain(cluster: str, markdown: bool) -> None:
    """Describe the cluster: network layers and their owners, nodes, control-plane endpoint."""
    from ..deliver import explain as ex

    model = _load(cluster)
    click.echo(ex.markdown(model) if markdown else ex.text(model), nl=False)


@click.command()
@CLUSTER_ARG
@click.argument("node", metavar="NODE")
@OUT_OPTION
@click.option("--output", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one document on stdout, for pipelines.")
def retire(cluster: str, node: str, out: str | None, output: str) -> None:
    """Print, in order, what removes NODE from the running cluster cleanly: cordon and drain,
    for a control-plane node its etcd member's removal, the Node object's deletion, the VM's
    destruction. Runs nothing."""
    import json
    from pathlib import Path

    from ..deliver import retire as r
    from ..output.layout import default_out

    model = _load(cluster)
    dest = (Path(out) if out else default_out(model)).absolute()
    if output == "json":
        click.echo(json.dumps(r.as_json(model, node, dest), indent=2))
        return
    lines = r.text(model, node, dest)  # refuses an unknown node or the last control-plane node first
    for line in r.warnings(model, node):
        say(line, err=True)
    for line in lines:
        say(line)


COMMANDS = (build, deploy, explain, retire)
