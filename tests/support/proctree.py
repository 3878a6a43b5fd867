"""CPU time of a process and all its descendants, read from /proc (Linux).

``tree_cpu_seconds(pid)`` sums utime+stime of ``pid`` and of every live descendant
(found through ``/proc/<pid>/task/*/children``, recursively).  Sample it before and
after a measured window: the difference is the CPU the tree spent in between, as long
as no process of the tree exits inside the window (an exited child's time moves to its
parent's cutime only once it is waited for).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["descendants", "process_cpu_seconds", "tree_cpu_seconds", "tree_pids"]

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of one process (all its threads); 0.0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, …)."""
    out: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop()
        if child in out:
            continue
        out.append(child)
        pending.extend(_children(child))
    return out


def tree_pids(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and all its live descendants."""
    return sum(process_cpu_seconds(p) for p in tree_pids(pid))
