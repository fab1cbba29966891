#!/usr/bin/env python3
"""bakery's benchmark: whole processes, several runs, medians and spread, peak RSS.

    python bench/run.py [--runs 5] [--sizes 1,3,100,1000,5000] [--json bench/results.json] [--dir DIR]

Each figure is a new process, as in CI. The floors are what no Python tool can go below on
this machine: `python -c pass` and importing yaml, jsonschema and click. bakery's figures
are reported in seconds and as the difference to the matching floor. A render is also set
against the floor of writing its tree at all: the same files extracted by tar and synced
(issue 22's ratios; every run starts after os.sync(), so none pays for another's write-back).
--dir picks the filesystem the trees are written to (default: the system's temporary folder);
on a tmpfs (--dir /dev/shm) the floor and the renders are CPU alone, the disk left out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from clusters import make_cluster  # noqa: E402

PY = sys.executable


def run_once(argv: list[str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB (of that process alone) and exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss // 1024, proc.returncode


def measure(name: str, argv: list[str], cwd: Path, runs: int, prepare=None) -> dict:
    walls, rss = [], []
    for _ in range(runs):
        if prepare:
            prepare()
        wall, peak, rc = run_once(argv, cwd)
        if rc != 0:
            raise SystemExit(f"{name}: {' '.join(argv)} exited {rc}")
        walls.append(wall)
        rss.append(peak)
    return {"name": name, "runs": runs, "median_s": statistics.median(walls),
            "min_s": min(walls), "max_s": max(walls),
            "stdev_s": statistics.stdev(walls) if len(walls) > 1 else 0.0, "peak_rss_mib": max(rss)}


def clean(path: Path, state: bool = False) -> None:
    """Start a run from nothing on disk that is still being written back (os.sync), without
    the folder (and the record bakery keeps beside it)."""
    shutil.rmtree(path, ignore_errors=True)
    if state:
        Path(path.parent / f".{path.name}.state").unlink(missing_ok=True)
    os.sync()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1,3,100,1000,5000")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--dir", default=None, help="where to write the trees (default: the system's temporary folder)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    bakery = [PY, "-m", "bakery"]
    work = Path(tempfile.mkdtemp(prefix="bakery-bench-", dir=args.dir))
    rows = []
    try:
        rows.append(measure("floor: python -c pass", [PY, "-c", "pass"], work, args.runs))
        rows.append(measure("floor: import yaml, jsonschema, click",
                            [PY, "-c", "import yaml, jsonschema, click"], work, args.runs))
        rows.append(measure("bakery --version", bakery + ["--version"], work, args.runs))
        rows.append(measure("bakery --help", bakery + ["--help"], work, args.runs))
        for n in sizes:
            f = work / f"c{n}.yaml"
            f.write_text(make_cluster(n, name=f"c{n}"))
            out = work / f"out{n}"
            rows.append(dict(measure(f"validate {n} nodes", bakery + ["validate", str(f)], work, args.runs), nodes=n))
            first = measure(f"render {n} nodes, first (makes keys)", bakery + ["render", str(f), "--out", str(out)],
                            work, max(1, min(args.runs, 3)),
                            prepare=lambda out=out: clean(out, state=True))
            rows.append(dict(first, nodes=n))
            rows.append(dict(measure(f"render {n} nodes, again (unchanged)",
                                     bakery + ["render", str(f), "--out", str(out)], work, args.runs), nodes=n))
            # the floor of a render (issue 22): the same tree written by tar and put on disk
            tarball = work / f"tree{n}.tar"
            subprocess.run(["tar", "-cf", str(tarball), "-C", str(out), "."], check=True)
            target = work / f"untar{n}"
            untar = f"mkdir {target} && tar -xf {tarball} -C {target} && sync -f {target}"
            rows.append(dict(measure(f"floor: tar -x + syncfs of the {n}-node tree", ["sh", "-c", untar],
                                     work, args.runs, prepare=lambda t=target: clean(t)), nodes=n, floor_of=n))
            tarball.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor_pass = rows[0]["median_s"]
    floor_import = rows[1]["median_s"]
    tree_floor = {r["floor_of"]: r["median_s"] for r in rows if "floor_of" in r}
    for r in rows:
        floor = floor_pass if r["name"].startswith("bakery --") else floor_import
        r["over_floor_s"] = r["median_s"] - floor
        if r.get("nodes"):
            r["per_node_ms"] = 1000 * r["median_s"] / r["nodes"]
            if r["name"].startswith("render") and r["nodes"] in tree_floor:
                # issue 22's targets: a first render within 3x, an unchanged one within 1.5x
                r["x_tree_floor"] = r["median_s"] / tree_floor[r["nodes"]]
    fs = subprocess.run(["df", "--output=fstype", str(work.parent)], capture_output=True,
                        text=True).stdout.split()[-1:]
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}", "runs": args.runs,
            "trees": f"{work.parent} ({fs[0] if fs else 'unknown filesystem'})"}
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"{meta['date']}, {meta['machine']}, trees in {meta['trees']}, median of {args.runs} runs "
          "(first renders: up to 3)\n")
    print(f"| {'what':44} | median s | spread s | over floor s | x tree floor | ms/node | peak RSS MiB |")
    print(f"|{'-' * 46}|---------:|---------:|-------------:|-------------:|--------:|-------------:|")
    for r in rows:
        per = f"{r['per_node_ms']:.2f}" if "per_node_ms" in r else ""
        over = "" if r["name"].startswith("floor") else f"{r['over_floor_s']:+.3f}"
        ratio = f"{r['x_tree_floor']:.2f}" if "x_tree_floor" in r else ""
        print(f"| {r['name']:44} | {r['median_s']:8.3f} | {r['max_s'] - r['min_s']:8.3f} | {over:>12} | "
              f"{ratio:>12} | {per:>7} | {r['peak_rss_mib']:12d} |")


if __name__ == "__main__":
    main()
