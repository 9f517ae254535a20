"""ModelZoo's server: the real `python -m modelzoo_server` on a loopback port."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests.servers import RunningServer, run_server


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def modelzoo_server(
    zoo: str,
    model_dir: Path,
    extra: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """The server with `extra` flags; `env` adds to this process's environment."""
    args = ["--zoo", zoo, "--model-dir", str(model_dir), *extra]
    with run_server(args, log, env={"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}) as server:
        yield server


def batch_totals(url: str, model: str) -> tuple[float, float]:
    """The server's `modelzoo_batch_size` histogram: (sum of batch sizes, graph calls)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            prefix = f'modelzoo_batch_size_{part}{{model="{model}"}} '
            if line.startswith(prefix):
                found[part] = float(line[len(prefix) :])
    return found.get("sum", 0.0), found.get("count", 0.0)
