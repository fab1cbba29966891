"""The checks judge what the model builds: VM ids, control-plane sizes, the endpoint and the
host-only address come from one rule each (bakery/spec/derive.py). Property: for clusters with
random per-node overrides, the checks pass exactly when the model's values are sound."""
from __future__ import annotations

import random

import pytest

from bakery.errors import InputError
from bakery.spec.pipeline import check_file, load_cluster

from clusters import make_cluster


def test_checks_and_model_agree(tmp_path):
    outcomes = [agree(tmp_path / f"{seed}.yaml", random.Random(seed), seed) for seed in range(40)]
    assert set(outcomes) == {"refused", "built"}  # both sides of the property were exercised


def agree(path, rng: random.Random, seed: int) -> str:
    text = make_cluster(4, name=f"d{seed}", builders=("virtualbox-iso", "proxmox-iso"))
    lines = text.splitlines()
    out = []
    for line in lines:
        if line.lstrip().startswith("- {name:") and line.rstrip().endswith("}"):
            extra = []
            if rng.random() < 0.3:
                extra.append(f"vmId: {rng.choice([*range(100, 130), 9000])}")
            if rng.random() < 0.3:
                extra.append(f"cpus: {rng.choice([1, 2, 2, 4])}")
            if rng.random() < 0.2:
                extra.append(f"memoryMiB: {rng.choice([1024, 2048, 4096])}")
            if extra:
                line = line.rstrip()[:-1] + ", " + ", ".join(extra) + "}"
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    report = check_file(str(path)).report
    ids = {d.check for d in report.errors}
    assert ids <= {"vmid-duplicate", "control-plane-size"}, [str(d) for d in report.errors]
    if ids:
        with pytest.raises(InputError):
            load_cluster(str(path))
        return "refused"
    cluster, _ = load_cluster(str(path))
    vm_ids = [n.vm_id for n in cluster.nodes] + [cluster.image.proxmox.template_vm_id]
    assert len(vm_ids) == len(set(vm_ids))
    assert all(n.cpus >= 2 and n.memory_mib >= 1700 for n in cluster.nodes if n.is_control_plane)
    return "built"
