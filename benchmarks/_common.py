"""Shared helpers for the benchmarks: cached synthetic data, and running a function in a fresh
subprocess to measure its wall time and peak memory (RSS) on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("BENCH_DATA", Path(__file__).resolve().parent / ".data"))
ROOT = Path(__file__).resolve().parent.parent


def measure(module: str, function: str, *args) -> dict:
    """Run ``module.function(*args)`` in a fresh interpreter; returns its JSON result plus
    ``wall_s`` (including imports) and ``peak_rss_mb`` of that process."""
    code = (
        "import json, resource, sys, time; t0 = time.perf_counter(); "
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        f"import {module} as m; out = m.{function}(*json.loads(sys.argv[1])); "
        "out['wall_s'] = round(time.perf_counter() - t0, 2); "
        # VmHWM, not ru_maxrss: ru_maxrss survives execve, so it would include the parent's peak
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]; "
        "out['peak_rss_mb'] = round(int(hwm[0].split()[1]) / 1024) if hwm else "
        "round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); "
        "print('@@' + json.dumps(out))"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True,
                          cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
    if proc.returncode != 0 or line is None:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "returncode": proc.returncode}
    return json.loads(line[2:])


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
