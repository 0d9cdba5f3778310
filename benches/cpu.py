"""Where a benchmark's CPU goes: time per process tree from /proc, and a
py-spy profile of the server's workers summed into self and inclusive time."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the state on


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the live ``pids`` have used."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS_PER_S


def children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds per named process tree between ``start`` and ``stop``."""

    roots: dict[str, int]

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {name: after[name] - self._before[name] for name in after}

    def _read(self) -> dict[str, float]:
        used = {name: cpu_s(tree(pid)) for name, pid in self.roots.items()}
        used["wrk"] = children_cpu_s()
        return used


def postmaster_pid(pg_dir: Path) -> int:
    return int((pg_dir / "postmaster.pid").read_text().split()[0])


class Profile:
    """py-spy sampling every worker of a server for ``duration_s``: the thread
    holding the GIL only (threads blocked in fdatasync, the loop waiting in
    Granian's runtime and Rust code that released the GIL are left out; the
    CPU table says how much those cost)."""

    def __init__(self, server_pid: int, duration_s: float, out_dir: Path) -> None:
        beside = Path(sys.prefix) / "bin/py-spy"
        spy = str(beside) if beside.exists() else shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        workers = [pid for pid in tree(server_pid) if pid != server_pid]
        self.files = [out_dir / f"worker-{pid}.txt" for pid in workers]
        self._spies = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(int(duration_s)),
                    "--format",
                    "raw",
                    "--output",
                    str(path),
                    "--nonblocking",
                    "--gil",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, path in zip(workers, self.files, strict=True)
        ]

    def report(self, top: int = 18) -> str:
        for spy in self._spies:
            spy.wait()
        leaf: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        samples = 0
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = [_short(f) for f in stack.split(";") if f]
                n = int(count)
                samples += n
                if frames:
                    leaf[frames[-1]] += n
                for frame in set(frames):
                    inclusive[frame] += n
        if not samples:
            return "py-spy: no samples"
        lines = [f"py-spy, {samples} samples over the workers; self time:"]
        lines += [f"  {100 * n / samples:5.1f} %  {f}" for f, n in leaf.most_common(top)]
        lines.append("inclusive time (our modules and the framework's entry points):")
        ours = [(f, n) for f, n in inclusive.most_common() if "eventbunker/" in f or "granian" in f]
        lines += [f"  {100 * n / samples:5.1f} %  {f}" for f, n in ours[:top]]
        return "\n".join(lines)


def _short(frame: str) -> str:
    """``fn (…/site-packages/pkg/mod.py:12)`` → ``fn (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
