"""render: model -> secrets -> plan -> files -> one atomic write of outputs/<cluster>/."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import EnvError, InputError
from .model import Cluster
from .writer import OutputFile, clean_stale, locked, read_tree, write_file_atomic, write_tree

SECRETS_NAME = "secrets.yaml"


@dataclass
class RenderResult:
    out: Path
    files: list[OutputFile]
    messages: list[str] = field(default_factory=list)
    exit_code: int = 0


def default_out(cluster: Cluster) -> Path:
    return Path.cwd() / "outputs" / cluster.name


def manifest(cluster: Cluster, files: list[OutputFile], fingerprint: str) -> OutputFile:
    entries = [{
        "path": f.path, "kind": f.kind, "node": f.node, "role": f.role,
        "sha256": hashlib.sha256(f.content).hexdigest(), "size": len(f.content),
        "mode": f"{f.mode:04o}",
    } for f in sorted(files, key=lambda f: f.path)]
    doc = {"bakery": __version__, "cluster": cluster.name, "kubernetesVersion": cluster.kubernetes_version,
           "bakeFingerprint": fingerprint, "files": entries}
    return OutputFile("manifest.json", (json.dumps(doc, indent=2) + "\n").encode(), kind="manifest")


def collect(cluster: Cluster, bundle, *, bundle_in_tree: bool) -> list[OutputFile]:
    """Every file of the output tree, in a stable order."""
    from . import deliver, firstboot, packer
    from .plan import image_plan

    plan = image_plan(cluster)
    files: list[OutputFile] = []
    files += packer.render_packer(cluster, plan)
    files += firstboot.render_nodes(cluster, bundle, plan)
    files += firstboot.render_cluster_files(cluster, bundle)
    files += deliver.render_delivery(cluster, plan, list(files))
    if bundle_in_tree:
        files.append(OutputFile(SECRETS_NAME, bundle.to_bytes(), kind="secrets", secret=True))
    seen = set()
    for f in files:
        if f.path in seen:  # pragma: no cover - a bug in a renderer, not user input
            raise AssertionError(f"two renderers wrote {f.path}")
        seen.add(f.path)
    files.sort(key=lambda f: f.path)
    files.append(manifest(cluster, files, plan.fingerprint))
    return files


def render_cluster(cluster: Cluster, *, out: str | None = None, secrets_path: str | None = None,
                   rotate_token: bool = False, check_only: bool = False,
                   lock_timeout: float = 60.0) -> RenderResult:
    from . import secrets

    dest = Path(out) if out else default_out(cluster)
    bundle_path = Path(secrets_path) if secrets_path else dest / SECRETS_NAME
    bundle_in_tree = bundle_path.absolute().parent == dest.absolute()
    if check_only:
        return _check(cluster, dest, bundle_path, bundle_in_tree)
    with locked(dest, lock_timeout):
        clean_stale(dest)
        bundle, changed = secrets.obtain(cluster, bundle_path, rotate_token=rotate_token)
        files = collect(cluster, bundle, bundle_in_tree=bundle_in_tree)
        if changed and not bundle_in_tree:
            # the bundle outside the tree is written first: outputs never refer to a lost bundle
            bundle_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file_atomic(bundle_path, bundle.to_bytes(), 0o600)
        write_tree(dest, files)
    result = RenderResult(dest, files)
    result.messages.append(f"wrote {len(files)} files to {dest}")
    if changed and not rotate_token:
        result.messages.append(f"created the secrets bundle {bundle_path} (keep it: it is the cluster's root of trust)")
    if rotate_token:
        result.messages.append("new bootstrap token; on a running cluster register it with:")
        result.messages.append(f"  {bundle.token_create_command(cluster)}")
    return result


def _check(cluster: Cluster, dest: Path, bundle_path: Path, bundle_in_tree: bool) -> RenderResult:
    from . import secrets

    if not bundle_path.exists():
        raise InputError(f"no secrets bundle at {bundle_path}: nothing was rendered there yet; "
                         "run `bakery render` first", check="check-no-bundle")
    bundle, _ = secrets.obtain(cluster, bundle_path, rotate_token=False, create=False)
    files = collect(cluster, bundle, bundle_in_tree=bundle_in_tree)
    want = {f.path: f.content for f in files}
    have = read_tree(dest)
    changed = sorted(p for p in want.keys() | have.keys() if want.get(p) != have.get(p))
    result = RenderResult(dest, files)
    if changed:
        result.exit_code = 1
        result.messages.append(f"{len(changed)} files differ from a fresh render of {dest}:")
        result.messages += [f"  {'+' if p not in have else '-' if p not in want else '~'} {p}" for p in changed]
    else:
        result.messages.append(f"{dest} is up to date ({len(files)} files)")
    return result


__all__ = ["render_cluster", "collect", "RenderResult", "EnvError"]
