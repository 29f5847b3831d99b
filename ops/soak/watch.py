"""What the soak watches while the box runs: each service's pids and RSS (per incarnation), and the
journals' halts, which it resumes as an operator would."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.errors import UserError
from ops.box import rpc
from warehouse.journal import default_path, read, send_command

NS = 1_000_000_000
RESUME_AFTER_S = 5.0
JOURNALS = {"runner": ("paper", "bybit"), "runner-standin": ("live", "bybit")}


class Watch:
    """During the run: the services' pids and RSS, the journals' halts (the soak resumes them)."""

    def __init__(self, box: Path, journal_dir: Path) -> None:
        self.box = box
        self.samples: list[tuple[float, str, int, float]] = []
        self.incarnations: dict[str, dict[int, list[int]]] = {}  # service -> pid -> [first, last] seen (ns)
        self.journals = {s: default_path(journal_dir, *mk) for s, mk in JOURNALS.items()}
        self.seen = dict.fromkeys(self.journals, 0)
        self.kinds: dict[str, Counter[str]] = {s: Counter() for s in self.journals}
        self.resumes: list[tuple[float, str, str]] = []  # (due wall s, service, reason)
        self.halts: list[dict[str, Any]] = []

    def pids(self) -> dict[str, int]:
        info = rpc(self.box).supervisor.getAllProcessInfo()
        return {str(p["name"]): int(p["pid"]) for p in info if p["statename"] == "RUNNING" and p["pid"]}

    def sample(self, t0_ns: int) -> None:
        now = time.time_ns()
        for name, pid in self.pids().items():
            seen = self.incarnations.setdefault(name, {}).setdefault(pid, [now, now])
            seen[1] = now
            kb = rss_kb(pid, children=name == "prefect")  # the server runs in a child of the wrapper
            if kb is not None:
                self.samples.append(((now - t0_ns) / NS, name, pid, kb))

    def journal_news(self, elapsed_s: float) -> None:
        for service, path in self.journals.items():
            if not path.exists():
                continue
            try:
                new = list(read(path, after=self.seen[service]))
            except UserError:
                continue  # being created
            for r in new:
                self.seen[service] = r.seq
                self.kinds[service][r.kind] += 1
                if r.kind == "halt":
                    reason = str(r.data.get("reason", ""))
                    self.halts.append({"service": service, "at_s": round(elapsed_s, 1), "reason": reason})
                    self.resumes.append((elapsed_s + RESUME_AFTER_S, service, reason))
                    print(f"  {service} HALTED ({reason}): the operator resumes it in {RESUME_AFTER_S:.0f} s")
        for _, service, _ in [r for r in self.resumes if r[0] <= elapsed_s]:
            send_command(self.journals[service], "resume", time.time_ns())
        self.resumes = [r for r in self.resumes if r[0] > elapsed_s]


def rss_kb(pid: int, children: bool = False) -> float | None:
    """VmRSS of a process (and of its descendants), kB; None when it is gone."""
    pids = [pid, *(_descendants(pid) if children else [])]
    total, found = 0.0, False
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += float(line.split()[1])
                    found = True
        except OSError:
            continue
    return total if found else None


def _descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out
