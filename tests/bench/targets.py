"""Issue 7's targets, judged from one run's cells: reported as met / missed, never asserted."""

from __future__ import annotations

from dataclasses import dataclass

from tests.bench.plan import CLASSIFIER, FACES
from tests.bench.run import Context
from tests.bench.stats import Cell


@dataclass(frozen=True)
class Target:
    name: str
    needed: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def _missing(name: str, needed: str, why: str) -> Target:
    return Target(name, needed, f"not measured in this run: {why}", None)


def _best(cells: list[Cell]) -> Cell | None:
    return max(cells, key=lambda c: c.images_per_s, default=None)


def batching_gains(ctx: Context) -> list[dict]:
    """On ÷ off per batchable model, endpoint and concurrency, beside the raw graph's gain."""
    rows = []
    models = dict.fromkeys(c.model for c in ctx.cells if c.batching == "on")
    for model in models:
        raw1 = ctx.find(model, "raw graph", "n/a", 1, 1)
        sizes = [c.batch for c in ctx.cells if c.model == model and c.path == "raw graph"]
        for concurrency in ctx.plan.concurrencies:
            if concurrency == 1:
                continue
            batch = max((b for b in sizes if b <= concurrency), default=1)
            raw = ctx.find(model, "raw graph", "n/a", 1, batch)
            for path in ("served V2", "served gRPC", "served /infer"):
                on = ctx.find(model, path, "on", concurrency)
                off = ctx.find(model, path, "off", concurrency)
                if not (on and off and raw and raw1):
                    continue
                gain = on.images_per_s / off.images_per_s
                raw_gain = raw.images_per_s / raw1.images_per_s
                rows.append(
                    {
                        "model": model,
                        "path": path,
                        "concurrency": concurrency,
                        "gain": gain,
                        "raw_batch": batch,
                        "raw_gain": raw_gain,
                        "share": gain / raw_gain,
                    }
                )
    return rows


def judge(ctx: Context) -> list[Target]:
    targets: list[Target] = []
    find = ctx.find

    # Face detection: served vs the `mtcnn` package, concurrency 1.
    name, needed = "face detection, concurrency 1: served ÷ `mtcnn` package images/s", "≥ 3×"
    served = find(FACES, "served /infer", "n/a", 1)
    package = find(FACES, "mtcnn package", "n/a", 1)
    if served and package:
        ratio = served.images_per_s / package.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio:.2f}× ({served.images_per_s:.1f} vs {package.images_per_s:.1f} images/s)",
                ratio >= 3,
            )
        )
    else:
        targets.append(_missing(name, needed, f"{FACES} was not measured"))

    # Classifier, concurrency 1: served p50 within 5 % (or 1 ms) of in-process p50.
    inproc1 = find(CLASSIFIER, "in-process", "n/a", 1)
    for batching in ("off", "on"):
        name = f"classifier, concurrency 1: served /infer p50 (batching {batching}) vs in-process"
        needed = "within 5 % or 1 ms"
        served = find(CLASSIFIER, "served /infer", batching, 1)
        if served and inproc1:
            mine, ceiling = served.p(50), inproc1.p(50)
            met = mine <= max(ceiling * 1.05, ceiling + 1.0)
            targets.append(
                Target(
                    name,
                    needed,
                    f"{mine:.1f} vs {ceiling:.1f} ms ({(mine / ceiling - 1) * 100:+.1f} %, "
                    f"{mine - ceiling:+.1f} ms)",
                    met,
                )
            )
        else:
            targets.append(_missing(name, needed, f"{CLASSIFIER} was not measured"))

    # Classifier at saturation: best served vs best in-process (batched) images/s.
    name = "classifier at saturation: best served /infer ÷ best in-process images/s"
    needed = "≥ 85 %"
    served_best = _best(
        [c for c in ctx.cells if c.model == CLASSIFIER and c.path == "served /infer"]
    )
    inproc_best = _best([c for c in ctx.cells if c.model == CLASSIFIER and c.path == "in-process"])
    if served_best and inproc_best:
        ratio = served_best.images_per_s / inproc_best.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio * 100:.1f} % ({served_best.images_per_s:.1f} images/s at concurrency "
                f"{served_best.concurrency}, batching {served_best.batching}, vs "
                f"{inproc_best.images_per_s:.1f} at concurrency {inproc_best.concurrency})",
                ratio >= 0.85,
            )
        )
    else:
        targets.append(_missing(name, needed, f"{CLASSIFIER} was not measured"))

    # Dynamic batching: on ÷ off at 16 and 64 vs the raw graph's gain from batch 1.
    gains = {
        (g["path"], g["concurrency"]): g for g in batching_gains(ctx) if g["model"] == CLASSIFIER
    }
    for concurrency in (16, 64):
        for path in ("served V2", "served /infer"):
            name = f"classifier, concurrency {concurrency}: batching on ÷ off ({path})"
            needed = "≥ 90 % of the raw graph's gain"
            g = gains.get((path, concurrency))
            if g is None:
                why = (
                    f"concurrency {concurrency} is not in this run's plan"
                    if concurrency not in ctx.plan.concurrencies
                    else f"{CLASSIFIER} was not measured with batching on and off"
                )
                targets.append(_missing(name, needed, why))
                continue
            targets.append(
                Target(
                    name,
                    needed,
                    f"{g['gain']:.2f}× vs raw graph batch 1→{g['raw_batch']} "
                    f"{g['raw_gain']:.2f}× ({g['share'] * 100:.1f} %)",
                    g["share"] >= 0.9,
                )
            )

    # KServe: the classifier at concurrency 16, same V2 payloads.
    name = "classifier, concurrency 16: served V2 (batching on) ÷ KServe ModelServer"
    needed = "≥ 1.5× images/s and a lower p99"
    served = find(CLASSIFIER, "served V2", "on", 16)
    kserve = find(CLASSIFIER, "KServe V2", "n/a", 16)
    if served and kserve:
        ratio = served.images_per_s / kserve.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio:.2f}× images/s ({served.images_per_s:.1f} vs "
                f"{kserve.images_per_s:.1f}); p99 {served.p(99):.0f} vs {kserve.p(99):.0f} ms",
                ratio >= 1.5 and served.p(99) < kserve.p(99),
            )
        )
    else:
        skipped = [why for what, why in ctx.skipped if "KServe" in what]
        why = skipped[0] if skipped else "KServe or concurrency 16 was not measured"
        targets.append(_missing(name, needed, why))

    # Resident memory.
    memory = ctx.memory
    name = f"server resident memory growth over {ctx.plan.memory_requests:,} requests"
    needed = "≤ 5 %"
    if memory is not None:
        growth = memory.growth - 1
        met = growth <= 0.05 and memory.requests >= memory.planned
        targets.append(
            Target(
                name,
                needed,
                f"{growth * 100:+.1f} % ({memory.after_warmup / 2**20:.0f} → "
                f"{memory.after / 2**20:.0f} MiB over {memory.requests:,} requests)",
                met,
            )
        )
    else:
        targets.append(_missing(name, needed, "the memory run did not happen"))
    return targets
