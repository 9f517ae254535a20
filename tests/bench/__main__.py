"""`python -m tests.bench [--quick] [--out docs/benchmarks.md]`: measure, then write the report.

Loopback only; bounded in requests and time per cell (see plan.py). Prints one line per
measurement on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smoke run: a few minutes")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--png", type=Path, help="the plot (default: --out with .png)")
    parser.add_argument("--json", type=Path, help="also write every cell as JSON here")
    parser.add_argument("--models", help="comma-separated zoo entries (default: the plan's)")
    parser.add_argument("--keep-logs", type=Path, help="keep the servers' logs in this folder")
    parser.add_argument(
        "--sections",
        help="comma-separated sections to run, to iterate on some (default: all; the report "
        "lists the others as not measured): run.py's SECTIONS without `_section`, e.g. "
        "models,tracing,litert",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Imported here, after the environment is set: these load TensorFlow.
    from dataclasses import replace

    from modelzoo_models import run_recipes, store
    from modelzoo_server.cpu import available_cpus
    from modelzoo_server.runtime import configure_threads
    from tests.bench import machine, report, targets
    from tests.bench.plan import FULL, QUICK, skipped_by_plan
    from tests.bench.run import SECTIONS, Context, run, section_name, stderr_log
    from tests.bench.venvs import KSERVE_VERSION

    started = time.monotonic()
    log = stderr_log(started)
    plan = QUICK if args.quick else FULL
    if args.models:
        plan = replace(plan, models=tuple(m.strip() for m in args.models.split(",") if m.strip()))
    only = None
    if args.sections:
        only = {s.strip() for s in args.sections.split(",") if s.strip()}
        unknown = only - {section_name(s) for s in SECTIONS}
        if unknown:
            known = ", ".join(section_name(s) for s in SECTIONS)
            parser.error(f"--sections: no section {', '.join(sorted(unknown))} (known: {known})")
    # The bench's own TensorFlow (raw graph, in-process pipeline) sized like the server's.
    configure_threads(available_cpus(), 2)
    load_start = machine.load_average()
    log(f"{'quick' if plan.quick else 'full'} run; building or finding the zoo")
    model_dir = run_recipes.build(store.model_dir(), log=log).parent
    with tempfile.TemporaryDirectory(prefix="modelzoo-bench-") as tmp:
        work = args.keep_logs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(plan=plan, model_dir=model_dir, work=work, log=log)
        ctx.skipped.extend(skipped_by_plan(plan))
        run(ctx, only)
    facts = machine.describe()
    judged = targets.judge(ctx)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": f"{(time.monotonic() - started) / 60:.1f} min",
        "load_start": load_start,
        "load_end": machine.load_average(),
        "kserve_version": KSERVE_VERSION,
    }
    png = args.png or args.out.with_suffix(".png")
    report.plot(ctx, png)
    report.write_markdown(ctx, args.out, png, facts, judged, meta)
    if args.json:
        report.write_json(ctx, args.json, judged, facts)
    for target in judged:
        log(f"target: {target.name}: {target.measured} → {target.verdict}")
    log(f"wrote {args.out} and {png} in {meta['duration']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
