"""`make bench`'s smoke test: the quick run runs and writes a well-formed report.

It asserts the shape of what was written (headers, one row per measured cell,
ratios that parse as numbers), never a timing: the targets are reported, not tested.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.inprocess import LITERT_PATH
from tests.bench.litert import ALONE_PATH, CEILING_PATHS, TF_SERVED
from tests.bench.report import COLUMNS, MEASUREMENTS_HEADING, RATIO_COLUMNS
from tests.bench.tracing_cost import OFF as TRACING_OFF
from tests.bench.tracing_cost import ON as TRACING_ON

pytestmark = pytest.mark.bench
REPO = Path(__file__).resolve().parents[2]


def table_after(markdown: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table under `heading`: its header and its rows."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(table) >= 2, f"no table under {heading!r}"
    header, rule, *rows = table
    assert all(set(c) <= {"-", ":"} for c in rule), f"not a Markdown table rule: {rule}"
    return header, rows


@pytest.mark.timeout(1200)
def test_quick_bench_writes_a_well_formed_report(tmp_path: Path) -> None:
    out, png, cells_json = tmp_path / "benchmarks.md", tmp_path / "plot.png", tmp_path / "b.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench",
            "--quick",
            "--out",
            str(out),
            "--png",
            str(png),
            "--json",
            str(cells_json),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    assert "[bench" in run.stderr  # progress lines

    markdown = out.read_text()
    cells = json.loads(cells_json.read_text())["cells"]
    assert cells, "the quick run measured nothing"
    header, rows = table_after(markdown, MEASUREMENTS_HEADING)
    assert tuple(header) == COLUMNS
    assert len(rows) == len(cells), "one row per measured cell"
    assert all(len(row) == len(COLUMNS) for row in rows)
    for row in rows:
        for column in RATIO_COLUMNS:
            float(row[COLUMNS.index(column)])  # a number (nan where a cell had no answer)
    ratios = [float(row[COLUMNS.index("images/s ÷ baseline")]) for row in rows]
    assert any(math.isfinite(r) and r > 0 for r in ratios)

    # gRPC next to REST V2: a cell for every REST V2 cell, each answer checked (a wrong
    # answer counts as an error), and the wire encoding stated in each row.
    v2 = {(c["model"], c["batching"], c["concurrency"]) for c in cells if c["path"] == "served V2"}
    grpc = {
        (c["model"], c["batching"], c["concurrency"]) for c in cells if c["path"] == "served gRPC"
    }
    assert v2 and grpc == v2
    checked = [c for c in cells if c["path"] in ("served V2", "served gRPC")]
    assert all(c["requests"] > 0 and c["errors"] == 0 for c in checked), checked
    wires = {row[COLUMNS.index("path")]: row[COLUMNS.index("wire")] for row in rows}
    assert "gRPC" in wires["served gRPC"] and "REST" in wires["served V2"]

    for heading in ("## Machine", "## Targets", "## Resident memory", "## Operator"):
        assert heading in markdown
    _, targets = table_after(markdown, "## Targets")
    verdicts = ("met", "**missed**", "not measured", "reported")
    assert targets and all(row[-1] in verdicts for row in targets)
    _, operator = table_after(markdown, "## Operator")
    assert len(operator) == 3 and all(row[-1] in ("met", "**missed**") for row in operator)

    # LiteRT (ceiling, the same model served on TensorFlow) and tracing (off and on): their
    # sections, their cells with checked answers, and their targets.
    for heading in ("## LiteRT", "## Tracing"):
        assert heading in markdown
    served = [c for c in cells if c["path"] in (TF_SERVED, TRACING_OFF, TRACING_ON)]
    assert {c["path"] for c in served} == {TF_SERVED, TRACING_OFF, TRACING_ON}
    assert all(c["requests"] > 0 and c["errors"] == 0 for c in served), served
    assert any(c["path"] in CEILING_PATHS for c in cells)
    assert any(c["path"] == LITERT_PATH and c["concurrency"] == 1 for c in cells)
    assert any(c["path"] == ALONE_PATH and c["concurrency"] == 1 for c in cells)
    # The server's own split of a served request, from its /metrics.
    split = [c for c in cells if c["path"] == "served V2"]
    assert split and all(0 < c["model_call_ms"] < c["handler_ms"] for c in split), split
    names = [row[0] for row in targets]
    assert "tracing off costs within noise" in names
    assert sum("LiteRT" in name or "bare process" in name for name in names) >= 4
    assert "## Not measured in this run" in markdown  # quick mode says what it skipped
    assert png.read_bytes().startswith(b"\x89PNG")
