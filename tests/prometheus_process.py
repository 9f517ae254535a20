"""Debian's real Prometheus (`make promtool` installs it) on a loopback port, scraping
every second (static targets, or the scrape configs given), and its HTTP query API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.servers import free_port, stop, wait_ready

PROMETHEUS = Path("/usr/bin/prometheus")
MISSING = f"{PROMETHEUS} is missing: `make promtool` installs it (Debian's prometheus package)"
SCRAPE_INTERVAL = "1s"


@dataclass(frozen=True)
class Prometheus:
    url: str

    def _get(self, path: str, **params: str) -> list[dict]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        data = body["data"]
        return data["result"] if isinstance(data, dict) else data

    def query(self, expr: str) -> list[dict]:
        """An instant query's series: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        return self._get("/api/v1/query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """A range query's series: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        return self._get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )

    def label_values(self, label: str, match: str) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", **{"match[]": match})


def static_jobs(targets: Mapping[str, str]) -> list[dict]:
    """Scrape configs for `targets` (job name → host:port, /metrics)."""
    return [
        {"job_name": job, "static_configs": [{"targets": [address]}]}
        for job, address in targets.items()
    ]


@contextlib.contextmanager
def run_prometheus(
    scrape_configs: Sequence[dict], workdir: Path, binary: Path = PROMETHEUS
) -> Iterator[Prometheus]:
    """Prometheus (Debian's, unless another `binary`) with these scrape configs and its data
    in `workdir`, stopped on exit. Raises FileNotFoundError(MISSING) when Debian's is not
    installed."""
    if not binary.exists():
        raise FileNotFoundError(MISSING if binary == PROMETHEUS else f"{binary} is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": list(scrape_configs),
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        wait_ready(f"http://{address}", process, log, timeout=60, path="/-/ready")
        yield Prometheus(f"http://{address}")
    finally:
        stop(process, grace=30)
