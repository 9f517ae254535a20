"""The cold path on the real node: `kubectl apply` of a ModelZoo → Ready, and → the first
inference answered through its Service, with the image already on the node; and where
that time goes, from the model pod's own start-up log.

`measure_on` works on any cluster with a real node and an operator watching it (the
`real` test tier runs it once on its session's cluster); `measure` brings up its own
cluster and operator for `make bench`.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.cluster import harness, realnode

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/modelzoo:dev"
NAMESPACE = "bench-real"
# One entry per runtime a CPU pod takes: mobilenet on LiteRT (no TensorFlow in the
# process), mtcnn on TensorFlow, which its `runtime` asks for (it runs on LiteRT too).
RUNTIMES = {"mobilenet": "auto", "mtcnn": "tensorflow"}
ENTRIES = tuple(RUNTIMES)
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LOADING = re.compile(r"loading \S+ on (\S+), ([\d.]+)s after the process started")
READY = re.compile(
    r"ready \([^)]*\) in ([\d.]+)s: runtime import ([\d.]+)s, load ([\d.]+)s, warm-up ([\d.]+)s"
)


@dataclass
class ColdStart:
    """One apply of a one-model zoo; seconds from the apply."""

    entry: str
    runtime: str
    ready_s: float  # the zoo's Ready condition
    first_answer_s: float  # the first 200 from the Service's ClusterIP
    # The parts, in order: the pod's process starting (API, scheduling, sandbox and
    # container start), the interpreter and the server's imports, the runtime's import,
    # the model's load (checks, graph or interpreter), warm-up, then readiness reaching
    # the Service and the status (probe period, endpoints, operator).
    parts: dict[str, float] = field(default_factory=dict)


def _zoo(name: str, entry: str) -> dict:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "models": [
                {
                    "name": "m",
                    "zoo": entry,
                    "runtime": RUNTIMES[entry],
                    "gpu": 0,
                    "nodeSelector": {realnode.LABEL_KEY: realnode.LABEL_VALUE},
                    "tolerations": [{**realnode.TAINT, "operator": "Equal"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                }
            ]
        },
    }


def _get(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def _ready(cluster, zoo: str) -> bool:
    status = _get(cluster, "modelzoo", zoo, "-n", NAMESPACE).get("status") or {}
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or ()
    )


def _answers(address: str) -> bool:
    request = urllib.request.Request(f"http://{address}/v2/models/m/ready")
    try:
        with DIRECT.open(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _address(cluster, zoo: str) -> str | None:
    found = cluster.kubectl(
        "get", "service", f"{zoo}-m", "-n", NAMESPACE, "-o", "json", check=False
    )
    if found.returncode != 0:
        return None
    spec = json.loads(found.stdout)["spec"]
    port = next(p["port"] for p in spec["ports"] if p["name"] == "http")
    return f"{spec['clusterIP']}:{port}"


def _stamp(line: str) -> float:
    """The time of a `kubectl logs --timestamps` line (containerd's, in nanoseconds)."""
    stamp = line.split(" ", 1)[0]
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    base = datetime.fromisoformat(whole + "+00:00").timestamp()
    return base + float(f"0.{fraction or '0'}")


def _parts(cluster, zoo: str, applied: float, ready: float, answered: float) -> tuple[str, dict]:
    logs = cluster.kubectl(
        "logs", "-n", NAMESPACE, "-l", f"modelzoo.dev/zoo={zoo}", "-c", "server",
        "--timestamps", "--tail=-1",
    ).stdout.splitlines()  # fmt: skip
    loading = next((line, m) for line in logs if (m := LOADING.search(line)))
    ready_line = next((line, m) for line in logs if (m := READY.search(line)))
    runtime, age = loading[1].group(1), float(loading[1].group(2))
    started = _stamp(loading[0]) - age
    _, imported, loaded, warmed = (float(g) for g in ready_line[1].groups())
    served = _stamp(ready_line[0])
    parts = {
        "apply → server process started": started - applied,
        "interpreter + server imports": age,
        "runtime import": imported,
        "model load": loaded,
        "warm-up": warmed,
        "→ first answer through the Service": answered - served,
        "→ zoo Ready": ready - served,
    }
    return runtime, parts


def cold_start(cluster, entry: str, timeout: float = 300) -> ColdStart:
    """Apply a one-model zoo, wait for Ready and the first answer, read its log, delete it."""
    zoo = f"cold-{entry}-{uuid.uuid4().hex[:6]}"
    applied = time.time()
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_zoo(zoo, entry)))
    ready = answered = None
    address = None
    try:
        while ready is None or answered is None:
            if time.time() - applied > timeout:
                raise TimeoutError(f"{zoo}: not Ready and answering after {timeout:.0f}s")
            if ready is None and _ready(cluster, zoo):
                ready = time.time()
            address = address or _address(cluster, zoo)
            if answered is None and address and _answers(address):
                answered = time.time()
            time.sleep(0.05)
        runtime, parts = _parts(cluster, zoo, applied, ready, answered)
    finally:
        cluster.kubectl("delete", "modelzoo", zoo, "-n", NAMESPACE, "--wait=false", check=False)
    return ColdStart(entry, runtime, ready - applied, answered - applied, parts)


def measure_on(cluster, runs: int, say=print) -> list[ColdStart]:
    """`runs` cold starts of each entry, one after another (one pod at a time)."""
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    results = []
    for entry in ENTRIES:
        for index in range(runs):
            result = cold_start(cluster, entry)
            say(
                f"real node: {entry} ({result.runtime}) #{index + 1}/{runs}: Ready "
                f"{result.ready_s:.1f}s, first answer {result.first_answer_s:.1f}s"
            )
            results.append(result)
            # The next pod starts on a quiet node: wait for this one to be gone.
            _wait_gone(cluster)
    return results


def _wait_gone(cluster, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while _get(cluster, "pods", "-n", NAMESPACE)["items"]:
        if time.monotonic() > end:
            raise TimeoutError(f"pods in {NAMESPACE} still there after {timeout:.0f}s")
        time.sleep(0.5)


def image_archive() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "tests" / "cluster" / "image.sh"), "--print-archive"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return Path(out.strip().splitlines()[-1])


def measure(runs: int, say=print) -> list[ColdStart]:
    """A cluster with the real node (image imported), the CRD and the operator as a local
    process creating pods from the image; then `measure_on`."""
    from tests.operator_process import run_operator

    env = {
        "MODELZOO_OPERATOR_IMAGE": IMAGE,
        "MODELZOO_OPERATOR_IMAGE_PULL_POLICY": "Never",
    }
    with (
        tempfile.TemporaryDirectory(prefix="modelzoo-bench-real-") as tmp,
        harness.session(real_node=True, images=[image_archive()]) as cluster,
    ):
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "modelzoo.yaml"))
        with run_operator(cluster.kubeconfig, Path(tmp), env):
            return measure_on(cluster, runs, say)


def summary(results: list[ColdStart]) -> list[tuple[str, str, float, float, dict[str, float]]]:
    """Per entry: (entry, runtime, p50 Ready, p50 first answer, p50 of each part)."""
    rows = []
    for entry in dict.fromkeys(r.entry for r in results):
        mine = [r for r in results if r.entry == entry]
        parts = {k: statistics.median(r.parts[k] for r in mine) for k in mine[0].parts}
        rows.append(
            (
                entry,
                mine[0].runtime,
                statistics.median(r.ready_s for r in mine),
                statistics.median(r.first_answer_s for r in mine),
                parts,
            )
        )
    return rows


def _installed_mib(distribution: str) -> tuple[str, float]:
    """(version, MiB of its installed files) of a package in this venv: the image's pins."""
    found = importlib.metadata.distribution(distribution)
    paths = [Path(str(found.locate_file(f))) for f in found.files or ()]
    return found.version, sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def image_text() -> str:
    """The image's size, and what the two runtimes take of it."""
    archive = image_archive()
    tensorflow, tf_mib = _installed_mib("tensorflow-cpu")
    litert, litert_mib = _installed_mib("ai-edge-litert")
    return (
        f"The image: {archive.stat().st_size / 2**30:.2f} GiB (the docker-archive of the "
        f"Dockerfile's build, zoo included). Of it, TensorFlow (`tensorflow-cpu` "
        f"{tensorflow}) takes {tf_mib:.0f} MiB installed, LiteRT (`ai-edge-litert` {litert}) "
        f"{litert_mib:.0f} MiB. No slim image without TensorFlow is built: every zoo entry "
        "now runs on LiteRT on a CPU node, but a user's graph that does not convert is "
        "served by TensorFlow in the same pod (the prepare step's fallback), and GPU pods "
        "run TensorFlow; one image serves all three."
    )


def section(ctx) -> None:
    """The report's section: p50 cold-start figures per runtime, and where the time goes."""
    from tests.bench.run import Section

    runs = 3
    ctx.log(f"real node: {runs} cold starts of each of {', '.join(ENTRIES)}")
    rows = summary(measure(runs, say=ctx.log))
    head = ["entry (runtime)", "apply → Ready", "apply → first answer"]
    part_names = list(rows[0][4])
    table = [
        "| " + " | ".join(head + part_names) + " |",
        "|" + "---|" * (len(head) + len(part_names)),
    ]
    for entry, runtime, ready, first, parts in rows:
        cells = [f"{entry} ({runtime})", f"{ready:.1f} s", f"{first:.1f} s"]
        cells += [f"{parts[name]:.2f} s" for name in part_names]
        table.append("| " + " | ".join(cells) + " |")
    ctx.sections.append(
        Section(
            title="Cold start on the real node",
            measured=True,
            text=(
                "The test cluster's real node (containerd + runc, kubelet, kube-proxy; "
                "tests/cluster/README.md) with the image built from the Dockerfile already "
                "imported (nothing is pulled), the operator as a local process. p50 of "
                f"{runs} applies of a one-model zoo, one at a time, each deleted before the "
                "next. Ready is the zoo's condition; the first answer is the first 200 from "
                "`/v2/models/m/ready` through the Service's ClusterIP. The parts come from "
                "the pod's own start-up log (`loading … after the process started`, `ready … "
                "runtime import, load, warm-up`) with containerd's timestamps: what comes "
                "before the server process (API, scheduling, sandbox, container start), the "
                "interpreter and server imports, the runtime's import (TensorFlow or "
                "LiteRT), the model's load and warm-up, then readiness reaching the Service "
                "(readiness probe, endpoints, kube-proxy) and the zoo's status "
                "(operator).\n\n" + "\n".join(table) + "\n\n" + image_text()
            ),
        )
    )
