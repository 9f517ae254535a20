"""What the numbers were measured on: CPU model, cores, the cgroup CPU quota, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from modelzoo_server.cpu import _cgroup_quota, available_cpus


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def describe() -> dict[str, str]:
    quota = _cgroup_quota()
    return {
        "CPU model": cpu_model(),
        "cores (os.cpu_count)": str(os.cpu_count()),
        "cores this process may use (affinity)": str(len(os.sched_getaffinity(0))),
        "cgroup CPU quota": "none (max)" if quota is None else f"{quota:g} CPUs",
        "CPUs the server sizes its pools for": str(available_cpus()),
        "memory": memory_total(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "tensorflow-cpu": _version("tensorflow-cpu"),
        "aiohttp": _version("aiohttp"),
        "mtcnn": _version("mtcnn"),
    }
