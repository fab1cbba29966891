"""The shape of bakery's package: its import graph, read from the source with `ast`.

Data flows one way (CONVENTIONS.md): each stage folder imports only from the stages before it
in STAGES, and no module imports, however lazily, a module that imports it back. Function-level
imports count: a cycle hidden inside functions still ties two stages together.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bakery"

# Shared helpers first, then the pipeline in order: cluster.yaml -> spec -> pki -> plan ->
# image and seed -> delivery -> render -> the command line. A module may import its own
# part and any part listed before it, never one listed after it.
STAGES = (
    "errors", "fsafe", "resources", "templating", "versions", "nodefacts", "owned",  # shared helpers, the catalog, node facts, bakery-owned settings
    "guest",      # runs on the node: imports nothing from bakery
    "providers",  # each hypervisor's facts
    "output",     # OutputFile, the atomic writer, the output layout
    "spec",       # load -> validate -> model
    "cni",        # each pod network plugin: its images, files and configuration
    "pki",        # secrets bundle, admin.conf
    "plan",       # node paths, image plan, node plans
    "image",      # bake steps, installer, Packer HCL
    "seed",       # per-node cloud-init
    "deliver",    # seed ISOs, hand-off scripts, README, Proxmox API
    "build",      # running Packer
    "renderkey",  # what decides a render's bytes
    "render",     # orchestration
    "cli",        # the commands
    "__main__",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The bakery modules `name` imports anywhere in its body (module level or in functions)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "bakery"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "bakery":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    out.discard(name)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle of g as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def stage_of(module: str) -> int:
    """The index of a module's stage in STAGES; the package itself (__version__) comes first."""
    if module == "bakery":
        return -1
    return STAGES.index(module.split(".")[1])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_relative_and_lazy_imports():
    g = graph()
    assert "bakery.spec.loader" in g["bakery.spec.pipeline"]      # from .loader import ...
    assert "bakery.spec.validate" in g["bakery.spec.pipeline"]    # inside a function
    assert "bakery.pki.store" in g["bakery.render"]               # from .pki import store, in a function
    assert "bakery.cli.deliver" in g["bakery.cli"]


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_stage():
    for name in modules():
        if name != "bakery":
            assert name.split(".")[1] in STAGES, f"{name}: add its folder to STAGES in the order of the pipeline"


def test_stages_import_only_downward():
    wrong = [f"{a} imports {b}" for a, targets in graph().items() for b in sorted(targets)
             if stage_of(b) > stage_of(a)]
    assert not wrong, "imports against the pipeline (see STAGES):\n" + "\n".join(wrong)


def test_the_node_check_is_one_stdlib_only_file():
    """It is baked into the image verbatim from its file (image/steps.py) and runs there alone."""
    path = PACKAGE / "guest" / "nodecheck.py"
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the node check imports nothing relative"
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, f"node check imports {name}"


@pytest.mark.parametrize("module", ["bakery.cli", "bakery.cli.commands", "bakery.cli.deliver", "bakery.cli.status",
                                    "bakery.providers"])
def test_command_line_modules_import_nothing_heavy_at_module_level(module):
    """What `bakery --help` loads: module-level imports of these stay within click and bakery's light parts."""
    path = modules()[module]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module in ("__future__", "click"), f"{module} imports {node.module} at module level"
        elif isinstance(node, ast.Import):
            assert all(a.name in ("sys", "click") for a in node.names), f"{module}: {ast.dump(node)}"


def test_the_schema_lists_the_providers_builders():
    """The builder names are the providers' (bakery/providers/): the schema's enum and default
    may not drift from them."""
    import json

    from bakery.providers import BUILDERS

    schema = json.loads((PACKAGE.parent / "schemas" / "cluster.schema.json").read_text())
    builders = schema["properties"]["spec"]["properties"]["image"]["properties"]["builders"]
    assert tuple(builders["items"]["enum"]) == BUILDERS
    assert tuple(builders["default"]) == BUILDERS


def test_each_render_computes_the_plan_once(monkeypatch, tmp_path):
    """The image plan and the node plans are computed once per render and passed down."""
    from bakery import plan as planpkg
    from bakery import render
    from bakery.pki import bundle as secrets
    from bakery.spec.pipeline import load_cluster

    calls = {"image_plan": 0, "node_plans": 0}
    for name in calls:
        original = getattr(planpkg, name)

        def counted(*a, _name=name, _original=original, **k):
            calls[_name] += 1
            return _original(*a, **k)
        monkeypatch.setattr(planpkg, name, counted)
    cluster, _ = load_cluster(str(PACKAGE.parent / "examples" / "lab" / "cluster.yaml"))
    bundle = secrets.new_bundle(cluster)
    render.collect(cluster, bundle, bundle_in_tree=False)
    assert calls == {"image_plan": 1, "node_plans": 1}
