"""Benchmark reports: the machine they ran on, appended as one section per run to docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS_MD = Path("docs/BENCHMARKS.md")


def machine_line() -> str:
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    cores = os.cpu_count() or "?"
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {cores} cores ({cpu}){memory}, Python {platform.python_version()}"


def append_report(title: str, lines: list[str]) -> None:
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nWritten by `poolhub bench …`; each section is one run, newest last. "
            "Every run measures a baseline endpoint of the same app in the same run.\n"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with BENCHMARKS_MD.open("a") as out:
        out.write(f"\n## {title} — {stamp}\n\nMachine: {machine_line()}\n\n" + "\n".join(lines) + "\n")
