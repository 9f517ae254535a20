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


# The server's histograms a cell reads before and after each slice: the graph calls'
# batch sizes, the requests' handler time, the model calls' time.
_SCRAPED = {
    "batch": "modelzoo_batch_size",
    "handler": "modelzoo_request_duration_seconds",
    "model": "modelzoo_inference_duration_seconds",
}
# The scrapes' own requests land in the handler histogram: not the cell's.
_NOT_THE_CELLS = 'endpoint="/metrics"'


def scrape(url: str, model: str) -> dict[str, float]:
    """Sums and counts of the server's histograms (`_SCRAPED`) over every label set of
    the model: `batch_sum`, `batch_count`, `handler_sum`, … ."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {f"{key}_{part}": 0.0 for key in _SCRAPED for part in ("sum", "count")}
    for line in text.splitlines():
        for key, metric in _SCRAPED.items():
            for part in ("sum", "count"):
                if not line.startswith(f"{metric}_{part}{{"):
                    continue
                labels = line[line.index("{") : line.rindex("}")]  # a route has {name}
                if f'model="{model}"' in labels and _NOT_THE_CELLS not in labels:
                    found[f"{key}_{part}"] += float(line.rsplit(" ", 1)[1])
    return found


def batch_totals(url: str, model: str) -> tuple[float, float]:
    """The server's `modelzoo_batch_size` histogram: (sum of batch sizes, graph calls)."""
    found = scrape(url, model)
    return found["batch_sum"], found["batch_count"]
