"""The KBS load generator's pieces that are not timings: CPU accounting of a process
tree from /proc, and how the scaling run is planned and divided."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from proctree import descendants, process_cpu_seconds, tree_cpu_seconds

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "kbs.py"

# A parent that sleeps while its child burns CPU for about `seconds`, then both wait.
BURNER = """
import os, sys, time
seconds = float(sys.argv[1])
pid = os.fork()
if pid == 0:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    print("burnt", flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_kbs", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tree_cpu_counts_a_busy_child_of_an_idle_parent() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER, "0.6"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "burnt"
        children = descendants(proc.pid)
        assert len(children) == 1
        parent_only = process_cpu_seconds(proc.pid)
        total = tree_cpu_seconds(proc.pid)
        assert parent_only < 0.4  # the parent only slept
        assert 0.5 <= total - parent_only <= 5.0  # the child's 0.6 s are counted
        assert abs(total - parent_only - process_cpu_seconds(children[0])) < 0.05
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_gone_process_counts_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    assert process_cpu_seconds(proc.pid) == 0.0
    assert descendants(proc.pid) == []


def test_scaling_plan_keeps_the_load_generator_off_the_server_cores() -> None:
    bench = _bench()
    assert bench.scaling_plan(list(range(2)), False) == []
    assert bench.scaling_plan(list(range(4)), False) == [(2, {0, 1}, {2, 3})]
    plan = bench.scaling_plan(list(range(16)), False)
    assert [w for w, _, _ in plan] == [2, 4, 8]
    for workers, server, load in plan:
        assert len(server) == max(2, workers)
        assert not server & load
    forced = bench.scaling_plan(list(range(2)), True)
    assert forced == [(2, {0, 1}, {0, 1})]


def test_scaling_ratios_divide_by_one_worker() -> None:
    bench = _bench()
    ratios = bench.scaling_ratios({2: None, 4: None, 8: None}, {1: 100.0, 2: 180.0, 4: 330.0})
    assert ratios == {2: 1.8, 4: 3.3, 8: None}
    assert bench.scaling_ratios({2: None}, {1: 0.0, 2: 50.0}) == {2: None}
