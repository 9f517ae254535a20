"""What one run measures: the full plan, or the quick one (`--quick`, the smoke test's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool
    models: tuple[str, ...]  # zoo entries, in run order (absent ones are skipped and said so)
    concurrencies: tuple[int, ...]
    batch_sizes: tuple[int, ...]  # the raw graph's, for models that batch
    cell_seconds: float  # aimed-at duration of one cell: sets its fixed request count
    cell_cap_seconds: float  # a cell stops here, whatever is left of its count
    max_requests: int  # per cell
    min_rounds: int  # each concurrent client sends at least this many requests
    slices: int  # each concurrency's cells run in this many alternating slices
    memory_requests: int  # requests between the two resident-memory readings
    memory_warmup: int  # requests before the first reading (every batch size shows up)
    peer_concurrencies_mtcnn: tuple[int, ...]  # the `mtcnn` package, in-process threads
    build_kserve: bool  # create KServe's venv when it is missing (else skip KServe)
    batching_on: tuple[str, ...] = ("--max-batch-size", "32", "--max-delay-ms", "5")
    batching_off: tuple[str, ...] = ("--max-batch-size", "1")


# The classifier the targets speak of, and the models KServe serves the same graph for.
CLASSIFIER = "mobilenet"
FACES = "mtcnn"
KSERVE_MODELS = ("mobilenet", "centernet")
MEMORY_MODEL = CLASSIFIER

FULL = Plan(
    quick=False,
    models=("mtcnn", "mobilenet", "nsfw", "emotion", "centernet"),
    concurrencies=(1, 4, 16, 64),
    batch_sizes=(1, 2, 4, 8, 16, 32, 64),
    cell_seconds=6.0,
    cell_cap_seconds=60.0,
    max_requests=2000,
    min_rounds=3,
    slices=5,
    memory_requests=10_000,
    memory_warmup=1_000,
    peer_concurrencies_mtcnn=(1, 4),
    build_kserve=True,
)

QUICK = Plan(
    quick=True,
    models=("mtcnn", "mobilenet"),
    concurrencies=(1, 16),
    batch_sizes=(1, 16),
    cell_seconds=2.0,
    cell_cap_seconds=15.0,
    max_requests=300,
    min_rounds=2,
    slices=2,
    memory_requests=500,
    memory_warmup=200,
    peer_concurrencies_mtcnn=(1,),
    build_kserve=False,
)


def skipped_by_plan(plan: Plan) -> list[tuple[str, str]]:
    """The cells the quick plan leaves out, and why (the report lists them)."""
    if not plan.quick:
        return []
    why = "quick mode (`--quick`): a smoke run that finishes in minutes"
    rest = [m for m in FULL.models if m not in plan.models]
    return [
        (f"models {', '.join(rest)}", why + "; it runs the classifier and mtcnn only"),
        (
            "concurrency "
            + ", ".join(str(c) for c in FULL.concurrencies if c not in plan.concurrencies),
            why,
        ),
        (
            "raw graph batch sizes "
            + ", ".join(str(b) for b in FULL.batch_sizes if b not in plan.batch_sizes),
            why,
        ),
        (
            "the `mtcnn` package at concurrency "
            + ", ".join(str(c) for c in FULL.peer_concurrencies_mtcnn[1:]),
            why,
        ),
        ("cold start on the real node", why + "; the `real` test tier measures it once"),
    ]
