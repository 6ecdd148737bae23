"""Measuring one call: wall and CPU time, peak RSS (a sampling thread), the machine's load; and the machine."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GiB = 1 << 30
MiB = 1 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_peak_rss() -> int | None:
    """VmHWM: peak RSS of the process since start (or since :func:`reset_peak_rss`)."""
    kib = _proc_status_kib("VmHWM")
    return None if kib is None else kib * 1024


def malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakSampler:
    """Background thread recording the peak RSS every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            r = rss_bytes()
            self.samples += 1
            if r > self.peak:
                self.peak = r
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process), from /proc/stat and /proc/self/stat."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        with open("/proc/self/stat") as fh:
            g = fh.read().rsplit(")", 1)[1].split()
        busy = f[0] + f[1] + f[2] + sum(f[5:8])  # user nice system irq softirq steal
        return busy, int(g[11]) + int(g[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Measured:
    value: object
    seconds: float
    cpu_seconds: float
    peak_bytes: int  # peak RSS during the call minus RSS just before it
    rss_before: int
    rss_peak: int  # absolute peak RSS during the call
    load: float  # 1-minute load average just before the call
    others: float | None  # share of the machine's CPU used by other processes during the call


def measure(fn) -> Measured:
    """Run ``fn()`` once; wall time, CPU time and peak RSS increase of the call only."""
    gc.collect()
    malloc_trim()
    load = os.getloadavg()[0]
    before = rss_bytes()
    with PeakSampler() as sampler:
        k0 = _cpu_ticks()
        c0 = time.process_time()
        t0 = time.perf_counter()
        value = fn()
        t1 = time.perf_counter()
        c1 = time.process_time()
        k1 = _cpu_ticks()
    others = None
    if k0 and k1 and t1 - t0 >= 0.5:  # ticks are 10 ms: too coarse for shorter calls
        others = max(0.0, ((k1[0] - k0[0]) - (k1[1] - k0[1])) / _TICK / ((t1 - t0) * (os.cpu_count() or 1)))
    return Measured(value, t1 - t0, c1 - c0, max(0, sampler.peak - before), before, sampler.peak, load, others)


def machine_info() -> dict:
    info = {"cores": os.cpu_count(), "cpu": platform.processor() or "unknown", "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kib = None
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    info["memory"] = f"{kib / (1 << 20):.1f} GiB" if kib else "unknown"
    info["numpy"] = np.__version__
    try:
        import torch

        info["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        info["torch"] = "not installed"
    try:
        from importlib.metadata import version

        info["nudge-ft"] = version("nudge-ft")
    except Exception:  # noqa: BLE001
        info["nudge-ft"] = "unknown"
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
        info["numpy BLAS"] = "; ".join(dict.fromkeys(blas)) or "unknown"
    except ImportError:
        pass
    info["platform"] = platform.platform()
    try:
        import subprocess

        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "nudge_rag"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if head:
            info["git"] = head + (" (nudge_rag/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info
