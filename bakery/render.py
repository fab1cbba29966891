"""render: model -> secrets -> plan -> files -> one atomic write of outputs/<cluster>/."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import InputError
from .output.layout import SECRETS_NAME, default_out
from .output.writer import OutputFile, clean_stale, list_tree, locked, read_file, write_file_atomic, write_tree
from .spec.model import Cluster


@dataclass
class RenderResult:
    out: Path
    count: int
    messages: list[str] = field(default_factory=list)
    exit_code: int = 0


def _entry(f: OutputFile) -> dict:
    return {"path": f.path, "kind": f.kind, "node": f.node, "role": f.role,
            "sha256": hashlib.sha256(f.content).hexdigest(), "size": len(f.content), "mode": f"{f.mode:04o}"}


def manifest(cluster: Cluster, entries: list[dict], fingerprint: str) -> OutputFile:
    """manifest.json: every file's hash, size and mode (never its content), sorted by path."""
    doc = {"bakery": __version__, "cluster": cluster.name, "kubernetesVersion": cluster.kubernetes_version,
           "bakeFingerprint": fingerprint, "files": sorted(entries, key=lambda e: e["path"])}
    return OutputFile("manifest.json", (json.dumps(doc, indent=2) + "\n").encode(), kind="manifest")


def iter_files(cluster: Cluster, bundle, *, bundle_in_tree: bool, plan=None) -> Iterator[OutputFile]:
    """Every file of the output tree, node by node, then manifest.json: a generator, so that
    a render holds one node's files at a time, whatever the cluster's size. plan: the image
    plan when the command has computed it already (the plan is computed once per command)."""
    from .deliver import handoff as deliver
    from .image import packer
    from .pki import kubeconfig
    from .plan import image_plan, node_plans
    from .seed import firstboot

    plan = plan or image_plan(cluster)
    entries: list[dict] = []

    def each() -> Iterator[OutputFile]:
        yield from packer.render_packer(cluster, plan)
        nodes = []
        plans = node_plans(cluster)
        for node_plan in plans:
            seed_files = firstboot.render_node(cluster, bundle, plan, node_plan)
            seed = {f.path.rsplit("/", 1)[1]: f for f in seed_files}
            yield from seed_files
            yield from deliver.node_files(cluster, node_plan, seed)
            nodes.append(deliver.node_delivery(cluster, node_plan, seed))
        yield from kubeconfig.render_cluster_files(cluster, bundle)
        yield from deliver.cluster_files(cluster, plan, nodes, plans)
        if bundle_in_tree:
            yield OutputFile(SECRETS_NAME, bundle.to_bytes(), kind="secrets", secret=True)

    for f in each():
        entries.append(_entry(f))
        yield f
    yield manifest(cluster, entries, plan.fingerprint)


def collect(cluster: Cluster, bundle, *, bundle_in_tree: bool) -> list[OutputFile]:
    """Every file of the output tree as a list, sorted by path (for tests and small trees)."""
    return sorted(iter_files(cluster, bundle, bundle_in_tree=bundle_in_tree), key=lambda f: f.path)


def render_cluster(cluster: Cluster, *, out: str | None = None, secrets_path: str | None = None,
                   rotate_token: bool = False, check_only: bool = False,
                   lock_timeout: float = 60.0, plan=None) -> RenderResult:
    from .pki import bundle as secrets

    dest = Path(out) if out else default_out(cluster)
    bundle_path = Path(secrets_path) if secrets_path else dest / SECRETS_NAME
    bundle_in_tree = bundle_path.absolute().parent == dest.absolute()
    if check_only:
        return _check(cluster, dest, bundle_path, bundle_in_tree, plan)
    _refuse_foreign(dest)
    with locked(dest, lock_timeout):
        clean_stale(dest)
        bundle, changed, notes = secrets.obtain(cluster, bundle_path, rotate_token=rotate_token)
        if changed and not bundle_in_tree:
            # the bundle outside the tree is written first: outputs never refer to a lost bundle
            bundle_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file_atomic(bundle_path, bundle.to_bytes(), 0o600)
        count = 0

        def counted():
            nonlocal count
            for f in iter_files(cluster, bundle, bundle_in_tree=bundle_in_tree, plan=plan):
                count += 1
                yield f
        write_tree(dest, counted())
    result = RenderResult(dest, count)
    result.messages.append(f"wrote {count} files to {dest}")
    result.messages += notes
    if rotate_token:
        result.messages.append("new bootstrap token; on a running cluster register it with:")
        result.messages.append(f"  {bundle.token_create_command(cluster)}")
    return result


def _refuse_foreign(dest: Path) -> None:
    """A render replaces its output folder whole: never one that bakery did not write."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise InputError(f"--out {dest} is a file, not a folder; pick a new or empty folder", check="out-not-bakery")
    entries = {p.name for p in dest.iterdir()}
    if entries <= {SECRETS_NAME}:  # empty, or a bundle put there for the first render
        return
    try:
        ours = "bakeFingerprint" in json.loads((dest / "manifest.json").read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise InputError(f"{dest} holds files that bakery did not write (no bakery manifest.json); a render "
                         "replaces its output folder whole, so pick a new or empty folder with --out",
                         check="out-not-bakery")


def _check(cluster: Cluster, dest: Path, bundle_path: Path, bundle_in_tree: bool, plan=None) -> RenderResult:
    from .pki import bundle as secrets

    if not bundle_path.exists():
        raise InputError(f"no secrets bundle at {bundle_path}: nothing was rendered there yet; "
                         "run `bakery render` first", check="check-no-bundle")
    bundle, _, notes = secrets.obtain(cluster, bundle_path, rotate_token=False, create=False)
    changed, wanted = [], set()
    for f in iter_files(cluster, bundle, bundle_in_tree=bundle_in_tree, plan=plan):
        wanted.add(f.path)
        if read_file(dest / f.path) != f.content:
            changed.append(f.path)
    have = set(list_tree(dest))
    changed = sorted(set(changed) | (have - wanted))
    result = RenderResult(dest, len(wanted))
    if changed:
        result.exit_code = 1
        result.messages.append(f"{len(changed)} files differ from a fresh render of {dest}:")
        result.messages += [f"  {'+' if p not in have else '-' if p not in wanted else '~'} {p}" for p in changed]
    else:
        result.messages.append(f"{dest} is up to date ({len(wanted)} files)")
    result.messages += notes
    return result

