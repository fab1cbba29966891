"""render: model -> secrets -> plan -> files -> one atomic write of outputs/<cluster>/."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from . import __version__, cni, fsafe, renderkey
from .errors import InputError
from .output import state
from .output.layout import SECRETS_NAME, default_out
from .output.writer import OutputFile, Tree, clean_stale, list_tree, locked, read_file, write_tree
from .spec.model import Cluster

if TYPE_CHECKING:
    from .pki.bundle import Bundle
    from .plan import ImagePlan

R = TypeVar("R")
MANIFEST_MAX = 256 << 20  # a 5,000-node cluster's manifest.json is about 5 MB


@dataclass
class RenderResult:
    out: Path
    count: int
    messages: list[str] = field(default_factory=list)
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)  # for stderr, each "warning[check]: ..."


def manifest(cluster: Cluster, entries: list[dict], fingerprint: str, token_id: str,
             upgrade: dict | None = None) -> OutputFile:
    """manifest.json: every file's hash, size and mode (never its content), sorted by path,
    the id of the bootstrap token the seeds carry (the id is the public half of a token:
    kubeadm names its Secret bootstrap-token-<id>; the secret half is never recorded), and the
    node whose seed runs kubeadm init (null once spec.bootstrap.initialized), and during an
    upgrade by replacement its versions (kept by later renders of the same version), and the
    pod network plugin (which only the init seed installs: _cni_change)."""
    init = None if cluster.initialized else cluster.init_node.name
    doc = {"bakery": __version__, "cluster": cluster.name, "kubernetesVersion": cluster.kubernetes_version,
           "bakeFingerprint": fingerprint, "bootstrapTokenId": token_id, "initNode": init,
           "cni": cni.installed(cluster.cni),
           **({"upgrade": upgrade} if upgrade else {}), "files": sorted(entries, key=lambda e: e["path"])}
    return OutputFile("manifest.json", (_indented(doc) + "\n").encode(), kind="manifest")


def _indented(doc: dict) -> str:
    """json.dumps(doc, indent=2), its "files" (the last key: thousands of flat entries) written
    by the C encoder: Python's indenting encoder was a tenth of a 5,000-node render. A JSON
    string holds no raw newline, so "},\n" followed by the next entry's brace occurs only
    between entries."""
    files = doc["files"]
    scalar = (str, int, float, bool, type(None))
    if not files or not all(type(e) is dict and e and all(isinstance(v, scalar) for v in e.values())
                            for e in files):
        return json.dumps(doc, indent=2)
    head = json.dumps({**doc, "files": []}, indent=2)
    assert head.endswith('"files": []\n}'), "files is the manifest's last key"
    body = json.dumps(files, separators=(",\n      ", ": ")).replace("},\n      {", "\n    },\n    {\n      ")
    return head[:-4] + "[\n    {\n      " + body[2:-2] + "\n    }\n  ]\n}"


@dataclass
class _Parts:
    """The output tree in its three parts: what comes before the nodes (Packer), each
    node's files (the same function for every node: the part that fans out), and what needs
    every node (the cluster's delivery files, kubeconfigs, the bundle, an upgrade's files)."""
    cluster: Cluster
    bundle: Bundle
    plan: ImagePlan
    bundle_in_tree: bool
    bundle_link: str | None
    extra: tuple[OutputFile, ...]

    def head(self) -> Iterator[OutputFile]:
        from .image import packer

        yield from packer.render_packer(self.cluster, self.plan)

    def node(self, node_plan):
        """(the node's files, its NodeDelivery)."""
        from .deliver import handoff as deliver
        from .seed import firstboot

        seed_files = firstboot.render_node(self.cluster, self.bundle, self.plan, node_plan)
        seed = {f.path.rsplit("/", 1)[1]: f for f in seed_files}
        files = [*seed_files, *deliver.node_files(self.cluster, node_plan, seed)]
        return files, deliver.node_delivery(self.cluster, node_plan, seed)

    def tail(self, nodes: list, plans: list) -> Iterator[OutputFile]:
        from .deliver import handoff as deliver
        from .pki import kubeconfig

        yield from kubeconfig.render_cluster_files(self.cluster, self.bundle)
        yield from deliver.cluster_files(self.cluster, self.plan, nodes, plans)
        if self.bundle_in_tree:
            yield OutputFile(SECRETS_NAME, self.bundle.to_bytes(), kind="secrets", secret=True)
        elif self.bundle_link is not None:
            yield OutputFile(SECRETS_NAME, b"", kind="secrets", link=self.bundle_link)
        yield from self.extra


def _produce(parts: _Parts, upgrade: dict | None, handle: Callable[[OutputFile], R],
             jobs: int) -> Iterator[tuple[str, bool, R]]:
    """(path, secret, handle(file)) for every file of the tree, in order, manifest.json last.
    The nodes are shared between this process and jobs - 1 forked workers (output.fanout): a
    node's files are made and handled where the node is (written into the new tree, compared
    with the folder), and only the files' paths, manifest entries and handle's results come
    back. Whatever the number of jobs, the files are the same: each node's are a function of
    the node alone."""
    from .output import fanout
    from .plan import node_plans

    entries: list[dict] = []

    def done(f: OutputFile) -> tuple[str, bool, R]:
        entries.append(f.entry())
        return f.path, f.secret, handle(f)

    def work(node_plan):  # in this process or a worker: only what it returns comes back
        files, delivery = parts.node(node_plan)
        return [(f.path, f.secret, handle(f)) for f in files], [f.entry() for f in files], delivery

    for f in parts.head():
        yield done(f)
    plans = node_plans(parts.cluster)
    nodes = []
    for made, node_entries, delivery in fanout.fan_out(plans, work, jobs):
        entries += node_entries
        nodes.append(delivery)
        yield from made
    for f in parts.tail(nodes, plans):
        yield done(f)
    yield done(manifest(parts.cluster, entries, parts.plan.fingerprint, parts.bundle.token_id, upgrade))


def _jobs(cluster: Cluster) -> int:
    from .output import fanout

    return fanout.jobs_for(len(cluster.nodes))


def iter_files(cluster: Cluster, bundle, *, bundle_in_tree: bool, plan=None,
               bundle_link: str | None = None, extra: tuple[OutputFile, ...] = (),
               upgrade: dict | None = None) -> Iterator[OutputFile]:
    """Every file of the output tree, node by node, then manifest.json: a generator, so that
    a render holds one node's files at a time, whatever the cluster's size. plan: the image
    plan when the command has computed it already (the plan is computed once per command).
    bundle_link: <out>/secrets.yaml is a symlink with this text, kept as it is. extra: files
    made outside the node loop (an upgrade's plan); upgrade: {from, to}, for the manifest.
    In this process alone; a render and --check use every core (_produce)."""
    from .plan import image_plan

    parts = _Parts(cluster, bundle, plan or image_plan(cluster), bundle_in_tree, bundle_link, extra)
    for _, _, f in _produce(parts, upgrade, lambda f: f, jobs=1):
        yield f


def fill_tree(tree: Tree, cluster: Cluster, bundle, *, bundle_in_tree: bool, plan, bundle_link: str | None,
              extra: tuple[OutputFile, ...], upgrade: dict | None) -> int:
    """Write iter_files' files into the new tree, each node's where it is made; returns how
    many files."""
    parts = _Parts(cluster, bundle, plan, bundle_in_tree, bundle_link, extra)
    count = 0
    for path, secret, _ in _produce(parts, upgrade, tree.write, _jobs(cluster)):
        tree.note(path, secret)
        count += 1
    return count


def collect(cluster: Cluster, bundle, *, bundle_in_tree: bool) -> list[OutputFile]:
    """Every file of the output tree as a list, sorted by path (for tests and small trees)."""
    return sorted(iter_files(cluster, bundle, bundle_in_tree=bundle_in_tree), key=lambda f: f.path)


def render_cluster(cluster: Cluster, *, out: str | None = None, secrets_path: str | None = None,
                   rotate_token: bool = False, check_only: bool = False, renew: bool = False,
                   lock_timeout: float = 60.0, plan=None, now: datetime.datetime | None = None,
                   upgrade_done: bool = False) -> RenderResult:
    """Render the cluster into its output folder. renew: reissue the bundle's leaf
    credentials first (`bakery secrets renew`). now: the clock, for tests of time."""
    from .pki import store
    from .plan import image_plan

    now = now or _now()
    plan = plan or image_plan(cluster)  # once per command: the files, the manifest and an upgrade's plan use it
    if out is not None and not out.strip():
        raise InputError("--out is empty; give a folder, or leave --out out for outputs/<cluster>",
                         check="out-empty")
    dest = (Path(out) if out else default_out(cluster)).absolute()
    _refuse_dest(dest, writing=not check_only)
    if check_only:
        if rotate_token:
            raise InputError("--check writes nothing, so it cannot rotate the token; run the render with "
                             "--rotate-token alone", check="check-rotate-token")
        return _check(cluster, dest, store.locate(dest, secrets_path), plan, now)
    _refuse_foreign(dest)
    store.locate(dest, secrets_path)  # a bundle path that cannot work is refused before anything is made
    with locked(dest, lock_timeout):
        loc = store.locate(dest, secrets_path)  # again under the tree's lock: the in-tree link is stable
        with store.locked(loc, lock_timeout):
            clean_stale(dest)
            recorded = state.load(dest)
            bundle, changed, notes = store.obtain(cluster, loc, rotate_token=rotate_token, renew=renew, now=now,
                                                  checked=state.checked_keys(recorded))
            previous = _previous(dest)
            seeds_cluster, extra, upgrade_of = _upgrade_context(cluster, previous, dest, plan, upgrade_done)
            _refuse_second_init(seeds_cluster, previous)
            cni_warnings = _cni_change(cluster, previous, running=seeds_cluster.initialized or bool(upgrade_of))
            seeded = _seeded_token_id(previous)
            # issue 22: a folder rendered from exactly these inputs and untouched since has
            # nothing to write (output.state); the lock, the bundle and the checks above ran as
            # for any render
            key = renderkey.render_key(seeds_cluster, bundle, loc, extra, upgrade_of)
            # during an upgrade the cluster runs, whatever spec.bootstrap.initialized says
            running = dataclasses.replace(cluster, initialized=True) if upgrade_of else cluster
            result = RenderResult(dest, 0, warnings=_token_warnings(running, bundle, now) + cni_warnings)
            kept = None if changed else state.unchanged(recorded, dest, key)
            if kept is not None:
                result.count = kept
                result.messages += _messages(cluster, dest, kept, notes, bundle, rotate_token, seeded, unchanged=True)
                result.messages += _upgrade_messages(seeds_cluster, dest, upgrade_of)
                return result
            count = 0

            def fill(tree: Tree) -> None:
                nonlocal count
                count = fill_tree(tree, seeds_cluster, bundle, bundle_in_tree=loc.in_tree, plan=plan,
                                  bundle_link=loc.link, extra=extra, upgrade=upgrade_of)

            # An external bundle changes with the tree: renamed into place right before the
            # swap, with signals held over both (write_tree), so a kill, Ctrl-C or full disk
            # before then changes neither, and outputs never refer to a bundle not on disk.
            write_bundle = changed and not loc.in_tree

            def commit() -> None:
                state.forget(dest)
                if write_bundle:
                    store.write(loc, bundle)

            def report() -> None:  # right after the swap, signals still held
                result.count = count
                result.messages += _messages(cluster, dest, count, notes, bundle, rotate_token, seeded)
                result.messages += _upgrade_messages(seeds_cluster, dest, upgrade_of)
                fsafe.record_completed(result.messages)

            write_tree(dest, fill, before_swap=commit, after_swap=report)
            state.record(dest, key, bundle.key_digests())
    return result


def _upgrade_messages(seeds_cluster: Cluster, dest: Path, upgrade_of: dict | None) -> list[str]:
    if not upgrade_of:
        return []
    joins = ("every seed joins the running cluster" if seeds_cluster.initialized else
             "the control plane is upgraded in place, the workers' seeds join")
    return [f"upgrade from Kubernetes {upgrade_of['from']} to {upgrade_of['to']}: the steps are in "
            f"{dest / 'UPGRADE.md'} (and upgrade.json); {joins}. Once every node runs the new version, render "
            "with --upgrade-done"]


def _messages(cluster: Cluster, dest: Path, count: int, notes: list[str], bundle, rotate_token: bool,
              seeded: str | None, unchanged: bool = False) -> list[str]:
    lines = [f"unchanged: the {count} files in {dest} are what this render makes (nothing written)" if unchanged
             else f"wrote {count} files to {dest}", *notes]
    if rotate_token:
        lines.append("new bootstrap token; on a running cluster register it with:")
        lines.append(f"  {bundle.token_create_command(cluster)}")
    elif seeded is not None and seeded != bundle.token_id:
        lines.append(f"the bundle's bootstrap token ({bundle.token_id}) is not the one the previous seeds "
                     f"in {dest} carried ({seeded}): a --rotate-token that was interrupted, or a bundle "
                     "changed by hand. The seeds now carry the bundle's; on a running cluster register it with:")
        lines.append(f"  {bundle.token_create_command(cluster)}")
    return lines


def _token_warnings(cluster: Cluster, bundle, now: datetime.datetime) -> list[str]:
    """token-expired: the token is past its TTL (counted from when bakery made it, the
    earliest kubeadm can have registered it), so a node joining a running cluster with it
    would be refused. token-age-unknown: a running cluster's bundle made before bakery
    recorded when its token was made."""
    fix = ("Render with --rotate-token and register the new token with the `kubeadm token create` command it "
           "prints")
    if not cluster.token_ttl_seconds:
        return []
    if bundle.token_created is None:
        if not cluster.initialized:
            return []
        return [f"warning[token-age-unknown]: the bundle does not say when its bootstrap token {bundle.token_id} was "
                f"made (an older bakery made it); with spec.bootstrap.tokenTTL {cluster.token_ttl} it has most likely "
                f"expired on the running cluster, and a node joining with these seeds would be refused. {fix}"]
    if not bundle.token_expired(cluster.token_ttl_seconds, now):
        return []
    running = ("on the running cluster, so a node that joins with these seeds would be refused" if cluster.initialized
               else "on a running cluster, so a node that joins one with these seeds would be refused (a cluster "
                    "not initialized yet is fine: kubeadm init registers the token afresh)")
    return [f"warning[token-expired]: the bootstrap token {bundle.token_id} was made on "
            f"{bundle.token_created.replace('T', ' ')}; with spec.bootstrap.tokenTTL {cluster.token_ttl} it has "
            f"expired {running}. {fix}"]


def _upgrade_context(cluster: Cluster, previous: dict, dest: Path, plan, done: bool = False
                     ) -> tuple[Cluster, tuple[OutputFile, ...], dict | None]:
    """(the cluster the seeds are rendered for, the upgrade's files, its {from, to}). When the
    output folder was rendered for another Kubernetes version, or is in the middle of an
    upgrade (manifest.json's "upgrade", kept until a render with ``done``), the render writes
    the upgrade's ordered plan, and every seed joins the running cluster if its control-plane
    nodes can be replaced at all. The skew is judged from the oldest version a node may still
    run: the start of an unfinished upgrade. Going back to that start cancels the upgrade."""
    import dataclasses

    from .deliver import upgrade

    old = previous.get("kubernetesVersion")
    recorded = previous.get("upgrade")
    going: dict = recorded if isinstance(recorded, dict) and isinstance(recorded.get("from"), str) else {}
    new = cluster.kubernetes_version
    if going:
        if new == going["from"]:
            return cluster, (), None  # the bump is undone before any node was said to be done
        if done and new == going.get("to"):
            return cluster, (), None
        upgrade.check_skew(going["from"], new)
        frm = going["from"]
    elif isinstance(old, str) and old != new:
        upgrade.check_skew(old, new)
        frm = old
    else:
        return cluster, (), None
    up = upgrade.Upgrade(frm, new, plan.image_name)
    seeds_cluster = dataclasses.replace(cluster, initialized=True) if up.replaces_control_plane(cluster) else cluster
    return seeds_cluster, tuple(upgrade.files(cluster, up, dest)), {"from": frm, "to": new}


def _previous(dest: Path) -> dict:
    """The output folder's manifest as the previous render left it ({} if none or unreadable)."""
    try:
        doc = json.loads(fsafe.read_regular(dest / "manifest.json", MANIFEST_MAX))
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _seeded_token_id(previous: dict) -> str | None:
    """The token id the previous render's seeds carry (None if unknown)."""
    token_id = previous.get("bootstrapTokenId")
    return token_id if isinstance(token_id, str) else None


def _refuse_second_init(cluster: Cluster, previous: dict) -> None:
    """Once a render gave one node the kubeadm init seed, another node's init seed would make a
    second cluster (its own etcd, the same CA and endpoint) if that node were (re-)created: when
    the first control-plane node was removed from cluster.yaml, or one was put before it, or
    initialized went back to false. The way on is spec.bootstrap.initialized: true."""
    if "initNode" not in previous or cluster.initialized:
        return
    before, now = previous["initNode"], cluster.init_node.name
    if before == now:
        return
    was = f"the previous render gave {before} the kubeadm init seed" if before else \
        "the previous render was of a running cluster (spec.bootstrap.initialized: true)"
    raise InputError(f"{was}; this one would give it to {now}, whose first boot would then make a second, empty "
                     "cluster. Once the cluster runs, set spec.bootstrap.initialized: true, so that every node "
                     "joins it; for a new cluster, render into a new folder", check="init-node-changed")


def _cni_change(cluster: Cluster, previous: dict, *, running: bool) -> list[str]:
    """The pod network plugin is installed once, by the init node's first boot (install_cni).
    A cluster.yaml that names another plugin than the previous render reaches no running node:
    the cluster keeps its plugin, while the image pre-pulls and checks the new one's files and
    `bakery explain` names it. Refused on a running cluster (a plugin migration is not something
    bakery does); before, a warning, as the init node may have booted with the old seed. A
    manifest without "cni" is from a bakery that installed only Calico."""
    if "initNode" not in previous:
        return []
    was = previous.get("cni", "calico")
    was = was if isinstance(was, dict) else {"plugin": was}
    now_installed = cni.installed(cluster.cni)
    before, now = str(was.get("plugin")), cluster.cni.name
    if before == now:
        # the same plugin, another release or setting: the running cluster keeps what it has
        changed = sorted(k for k in now_installed if k in was and was[k] != now_installed[k])
        if not changed or not running:
            return []
        what = ", ".join(f"{k} {was[k]} -> {now_installed[k]}" for k in changed)
        return [f"warning[cni-changed]: {now} on the running cluster keeps what its init installed ({what}): bakery "
                f"does not change a running plugin; change it with {now}'s own procedure, as nodes made from this "
                "render bake and expect the new one"]
    if running:
        raise InputError(f"the previous render installed the pod network plugin {before}; this one names {now}, "
                         "but on a running cluster no node installs a plugin again (only kubeadm init's first boot "
                         f"does), so the cluster would keep {before} while the image and its checks expect {now}. "
                         f"Keep spec.cni {before} for this cluster; a cluster with {now} is a new cluster: render it "
                         "into a new folder", check="cni-changed")
    return [f"warning[cni-changed]: the previous render's seeds install {before}, this one's {now}: if the init "
            f"node has already booted, the cluster runs {before} and keeps it (only kubeadm init's first boot "
            "installs the plugin); re-create every node from these seeds, or keep spec.cni as it was"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _refuse_dest(dest: Path, *, writing: bool) -> None:
    """Output folders a render must not swap: a symlink (the link itself would be replaced),
    and the folder the user is in or one holding it (the shell would be left in a deleted
    folder)."""
    if dest.is_symlink():
        raise InputError(f"--out {dest} is a symbolic link (to {os.path.realpath(dest)}); a render replaces its "
                         "output folder whole, which would replace the link: pass the real folder",
                         check="out-symlink")
    if writing:
        here = Path.cwd().resolve()
        real = dest.resolve()
        if real == here or real in here.parents:
            raise InputError(f"--out {dest} is the folder you are in, or holds it; a render replaces its output "
                             "folder whole: pick a sub-folder, such as outputs/<cluster>", check="out-cwd")


def _refuse_foreign(dest: Path) -> None:
    """A render replaces its output folder whole: never one that bakery did not write."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise InputError(f"--out {dest} is a file, not a folder; pick a new or empty folder", check="out-not-bakery")
    owner = dest.stat().st_uid
    if owner != os.geteuid():  # its files could be anyone's, hard-linked anywhere
        raise InputError(f"--out {dest} belongs to another user (uid {owner}); a render replaces its output folder "
                         "and reuses its files: pick a folder of yours", check="out-not-bakery")
    entries = {p.name for p in dest.iterdir()}
    if entries <= {SECRETS_NAME}:  # empty, or a bundle put there for the first render
        return
    try:
        ours = "bakeFingerprint" in json.loads(fsafe.read_regular(dest / "manifest.json", MANIFEST_MAX, own=True))
    except (OSError, ValueError, TypeError, RecursionError):  # NotRegular, NotOwn and TooLarge are ValueErrors
        ours = False
    if not ours:
        raise InputError(f"{dest} holds files that bakery did not write (no bakery manifest.json); a render "
                         "replaces its output folder whole, so pick a new or empty folder with --out",
                         check="out-not-bakery")


def _check(cluster: Cluster, dest: Path, loc, plan=None, now: datetime.datetime | None = None) -> RenderResult:
    from .pki import store
    from .plan import image_plan as _image_plan

    if not loc.real.exists():
        raise InputError(f"no secrets bundle at {loc.path}: nothing was rendered there yet; "
                         "run `bakery render` first", check="check-no-bundle")
    bundle, _, notes = store.obtain(cluster, loc, rotate_token=False, create=False, now=now)
    previous = _previous(dest)
    seeds_cluster, extra, upgrade_of = _upgrade_context(cluster, previous, dest, plan)

    def same(f: OutputFile) -> bool:  # where the file is made: in a worker for a node's files
        if f.link is not None:
            return (dest / f.path).is_symlink() and os.readlink(dest / f.path) == f.link
        return read_file(dest / f.path, len(f.content)) == f.content

    parts = _Parts(seeds_cluster, bundle, plan or _image_plan(seeds_cluster), loc.in_tree, loc.link, extra)
    changed, wanted = [], set()
    for path, _, unchanged in _produce(parts, upgrade_of, same, _jobs(cluster)):
        wanted.add(path)
        if not unchanged:
            changed.append(path)
    have = set(list_tree(dest))
    changed = sorted(set(changed) | (have - wanted))
    result = RenderResult(dest, len(wanted), warnings=_token_warnings(cluster, bundle, now or _now()))
    if changed:
        result.exit_code = 1
        result.messages.append(f"{len(changed)} files differ from a fresh render of {dest}:")
        result.messages += [f"  {'+' if p not in have else '-' if p not in wanted else '~'} {p}" for p in changed]
    else:
        result.messages.append(f"{dest} is up to date ({len(wanted)} files)")
    result.messages += notes
    return result
