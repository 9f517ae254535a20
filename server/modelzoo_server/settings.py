"""The server's one settings object: flags, with MODELZOO_* environment equivalents, and
tracing from the standard OTEL_* variables (modelzoo_server.tracing)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelzoo_models.contract import AUTO, MODEL_DIR, RUNTIMES
from modelzoo_models.saved_model import DEFAULT_SIGNATURE, is_saved_model
from modelzoo_server import access_log, tracing
from modelzoo_server.cpu import available_cpus


@dataclass(frozen=True)
class Settings:
    zoo: str | None
    graph: Path | None
    signature: Path | None
    signature_name: str  # the SavedModel signature served (with a SavedModel --graph)
    # The prepare step's folder for --graph (modelzoo_models.prepared); None: the server
    # prepares the graph itself, into a temporary folder.
    prepared: Path | None
    name: str
    model_dir: Path
    sha256: str | None
    runtime: str  # auto | litert | tensorflow (modelzoo_server.runtimes)
    host: str
    port: int
    grpc_port: int  # 0: no gRPC server
    max_body_bytes: int
    max_pixels: int
    max_inflight: int
    executor_threads: int
    intra_op_threads: int  # TensorFlow's intra-op pool
    interpreters: int  # LiteRT's interpreters; TensorFlow ignores it
    interpreter_threads: int  # each LiteRT interpreter's threads
    lone_call_threads: int  # LiteRT's interpreter for a lone call; 0: none
    pipelines: int  # MTCNN on LiteRT: whole P/R/O-Net pipelines
    inter_op_threads: int
    max_batch_size: int
    max_delay_ms: float
    drain_seconds: float
    token_file: Path | None
    auth_scope: str
    log_level: str
    access_log: str  # text | json | off (modelzoo_server.access_log)
    tracing: tracing.TracingSettings | None = None  # None: off

    def litert_members(self, pipeline: bool) -> tuple[int, int, int]:
        """LiteRT's pool as (members, threads each, the lone member's threads or 0): of
        interpreters, or for a pipeline model (mtcnn) of whole pipelines, which share
        --intra-op-threads (default: the quota)."""
        if not pipeline:
            return self.interpreters, self.interpreter_threads, self.lone_call_threads
        threads = max(1, self.intra_op_threads // self.pipelines)
        lone = self.lone_call_threads if self.pipelines > 1 else 0
        return self.pipelines, threads, lone if lone > threads else 0


# LiteRT's defaults: one single-threaded interpreter per CPU of the quota, and one more
# with every CPU's thread for a lone call (litert.LiteModel). Measured on 2 CPUs, served
# REST V2 (mobilenet / nsfw / emotion): 2 × 1 ran the most images/s at concurrency 16-64
# (140 / 158 / 532-551, against 98-107 / 110-119 / 424-440 for 1 × 2; in-process too,
# 165 / 218-277 / 1,480 against 119-155 / 116-236 / 1,230-1,420), 1 × 2 the lowest
# p50 at concurrency 1 (8.5 / 7.2 / 3.0 ms, against 14.2 / 11.2 / 4.3); with the lone
# interpreter the default had both (8.7 / 7.1 / 2.8 ms alone, 130-135 / 157-159 /
# 510-520 images/s at 16-64), for one more interpreter's memory (mobilenet +23 MiB).
# 2 × 2 oversubscribes the CPUs (mobilenet at concurrency 64: 61-73 images/s). At most
# DEFAULT_INTERPRETERS_CAP by default, sharing the quota's threads: each holds its own
# packed weights, and a pod without a CPU limit sees every core of its node.
DEFAULT_INTERPRETERS_CAP = 4
# MTCNN on LiteRT runs whole pipelines (P/R/O-Net, the pyramid and NMS in numpy), each
# with its own PNet buffers for the levels it has seen. Measured on 2 CPUs, served REST V2
# at concurrency 8 on the bench's photos: a pool of three (2 × 1 thread and a lone one of
# 2) ran 26.7 images/s against 24.6 for one pipeline of 2 threads, and held 889 MiB
# against 385 (TensorFlow: 26.3 images/s, 779 MiB). 8 % more images/s is not worth 2.3×
# the memory, and more than TensorFlow's, by default.
DEFAULT_PIPELINES = 1


def litert_pool(
    cpus: int, interpreters: int | None, threads: int | None, executor_threads: int | None
) -> tuple[int, int]:
    """(interpreters, threads each) from the flags given (None: not given): what is not
    given shares the quota out, so that the pool runs no more threads than there are CPUs,
    and no more interpreters than the executor has threads."""
    if interpreters is None:
        interpreters = max(1, cpus // threads) if threads else min(cpus, DEFAULT_INTERPRETERS_CAP)
        interpreters = min(interpreters, executor_threads or interpreters)
    return interpreters, threads or max(1, cpus // interpreters)


def _parser(env: Mapping[str, str], cpus: int) -> argparse.ArgumentParser:
    def default(flag: str, fallback: object) -> object:
        return env.get("MODELZOO_" + flag.upper().replace("-", "_"), fallback)

    p = argparse.ArgumentParser(
        prog="modelzoo-server",
        description="Serve one TensorFlow frozen graph over HTTP (native /infer and KServe V2). "
        "Every flag has a MODELZOO_<FLAG> environment equivalent, e.g. --max-inflight → "
        "MODELZOO_MAX_INFLIGHT.",
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--zoo", default=default("zoo", None), help="a zoo catalog entry (e.g. mtcnn)"
    )
    model.add_argument(
        "--graph",
        type=Path,
        default=default("graph", None),
        help="a frozen GraphDef .pb, or a TensorFlow SavedModel (a folder or a .tar.gz of one)",
    )
    model.add_argument(
        "--signature",
        type=Path,
        default=default("signature", None),
        help="JSON/YAML file with the graph's inputs/outputs (with --graph; optional for a "
        "SavedModel, whose own signature is used otherwise)",
    )
    model.add_argument(
        "--signature-name",
        default=default("signature-name", DEFAULT_SIGNATURE),
        help=f"the SavedModel signature to serve (default {DEFAULT_SIGNATURE})",
    )
    model.add_argument(
        "--prepared",
        type=Path,
        metavar="DIR",
        default=default("prepared", None),
        help="with --graph: the folder where `modelzoo-prepare --prepared DIR` (a pod's "
        "prepare-model init container) wrote the graph's record, which names its verified "
        ".tflite or says why there is none; the server then converts nothing. Without it, "
        "the server runs that prepare step itself first (unless --runtime tensorflow)",
    )
    model.add_argument(
        "--name", default=default("name", None), help="served model name (default: the zoo entry)"
    )
    model.add_argument(
        "--model-dir",
        type=Path,
        default=default("model-dir", MODEL_DIR),
        help="folder with the built zoo and catalog.json",
    )
    model.add_argument(
        "--sha256",
        default=default("sha256", None),
        help="expected sha256 of the graph file, SavedModel .tar.gz or SavedModel folder "
        "(modelzoo-digest PATH prints it)",
    )
    model.add_argument(
        "--runtime",
        default=default("runtime", AUTO),
        choices=RUNTIMES,
        help="litert: the record's verified .tflite, without TensorFlow; tensorflow: the graph; "
        "auto (default): litert where the record has a verified .tflite, else tensorflow. "
        "The record: the zoo's catalog for --zoo, the prepare step's for --graph",
    )
    net = p.add_argument_group("network")
    net.add_argument("--host", default=default("host", "127.0.0.1"))
    net.add_argument("--port", type=int, default=default("port", 8080))
    net.add_argument(
        "--grpc-port",
        type=int,
        default=default("grpc-port", 8081),
        help="Open Inference Protocol gRPC port, on the same --host (0 turns gRPC off)",
    )
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-body-bytes", type=int, default=default("max-body-bytes", 20 << 20))
    limits.add_argument("--max-pixels", type=int, default=default("max-pixels", 40_000_000))
    limits.add_argument(
        "--max-inflight",
        type=int,
        default=default("max-inflight", 64),
        help="requests accepted at once; more get 429 with Retry-After",
    )
    limits.add_argument(
        "--drain-seconds",
        type=float,
        default=default("drain-seconds", 20.0),
        help="how long SIGTERM waits for in-flight requests",
    )
    perf = p.add_argument_group("performance")
    perf.add_argument(
        "--executor-threads",
        type=int,
        default=default("executor-threads", None),
        help="threads that decode, pre- and post-process and run the model (default: the "
        "CPU quota, at least 2 and at least --interpreters, which it must be)",
    )
    perf.add_argument(
        "--intra-op-threads",
        type=int,
        default=default("intra-op-threads", None),
        help="threads inside one model call: TensorFlow's intra-op pool (default: the CPU "
        "quota), each LiteRT interpreter's (default: the quota ÷ --interpreters, at least 1)",
    )
    perf.add_argument(
        "--interpreters",
        type=int,
        default=default("interpreters", None),
        help="LiteRT: interpreters over the one .tflite, each with --intra-op-threads threads, "
        "so that as many calls run at once; each holds its own packed weights and buffers "
        "(TensorFlow ignores it: it has its own pools). Default: the CPU quota ÷ "
        "--intra-op-threads, no more than --executor-threads; with neither given, one "
        "single-threaded interpreter per CPU (up to 4, then sharing the CPUs), which "
        "measured the most images/s at saturation; --lone-call-threads keeps a lone request "
        "fast",
    )
    perf.add_argument(
        "--lone-call-threads",
        type=int,
        default=default("lone-call-threads", None),
        help="LiteRT: one more interpreter, with this many threads, for a call that finds no "
        "other in flight (the others wait while it runs): a lone request's latency of one "
        "interpreter with every CPU, the images/s of many at saturation. Default: the CPU "
        "quota where it is more than --intra-op-threads; 0: none",
    )
    perf.add_argument(
        "--pipelines",
        type=int,
        default=default("pipelines", DEFAULT_PIPELINES),
        help="LiteRT, mtcnn: whole P/R/O-Net pipelines that run calls at once, each holding "
        "its own buffers for every pyramid level it has seen. Default 1, with every CPU of "
        "the quota (a pool measured 8 %% more images/s for 2.3× the memory); N > 1: N "
        "pipelines sharing the quota's threads, and one more with --lone-call-threads",
    )
    perf.add_argument("--inter-op-threads", type=int, default=default("inter-op-threads", 2))
    perf.add_argument(
        "--max-batch-size",
        type=int,
        default=default("max-batch-size", 1),
        help="dynamic batching: most requests run as one batch (1 = off). TensorFlow only: "
        "a model on LiteRT runs each request alone (batches measured no faster there)",
    )
    perf.add_argument(
        "--max-delay-ms",
        type=float,
        default=default("max-delay-ms", 5.0),
        help="dynamic batching: how long a request may wait for company",
    )
    sec = p.add_argument_group("security")
    sec.add_argument(
        "--token-file",
        type=Path,
        default=default("token-file", None),
        help="file of bearer tokens (one per line) required by the inference endpoints",
    )
    sec.add_argument(
        "--auth-scope",
        default=default("auth-scope", "inference"),
        choices=["inference", "all"],
        help="with --token-file: protect only inference (health and metrics stay open for "
        "probes and scraping) or every endpoint",
    )
    p.add_argument(
        "--log-level",
        default=default("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    p.add_argument(
        "--access-log",
        default=default("access-log", access_log.TEXT),
        choices=access_log.MODES,
        help="json: one JSON line per request (REST and gRPC) on stdout; text (default): "
        "aiohttp's line per HTTP request; off: none",
    )
    return p


def parse_settings(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cpus: int | None = None,
) -> Settings:
    """The settings from `argv` and `env` (default: sys.argv, os.environ); `cpus`, the CPU
    quota the defaults follow (default: this process's, modelzoo_server.cpu)."""
    env = os.environ if env is None else env
    cpus = available_cpus() if cpus is None else cpus
    parser = _parser(env, cpus)
    args = parser.parse_args(argv)
    if bool(args.zoo) == bool(args.graph):
        parser.error("give exactly one of --zoo NAME or --graph PATH (with --signature FILE)")
    if args.graph and not args.signature and not is_saved_model(args.graph):
        parser.error("--graph needs --signature FILE describing its input and output tensors")
    if args.prepared and not args.graph:
        parser.error("--prepared goes with --graph (a zoo entry's record is its catalog's)")
    for flag in (
        "max_body_bytes",
        "max_pixels",
        "max_inflight",
        "executor_threads",
        "intra_op_threads",
        "interpreters",
        "pipelines",
        "inter_op_threads",
        "max_batch_size",
    ):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    interpreters, interpreter_threads = litert_pool(
        cpus, args.interpreters, args.intra_op_threads, args.executor_threads
    )
    executor_threads = args.executor_threads or max(2, cpus, interpreters, args.pipelines)
    if executor_threads < interpreters:
        # An interpreter that no executor thread can reach is memory that never runs.
        parser.error("--executor-threads must be at least --interpreters")
    lone_call_threads = cpus if args.lone_call_threads is None else args.lone_call_threads
    if lone_call_threads < 0:
        parser.error("--lone-call-threads must not be negative")
    if not 0 <= args.grpc_port <= 65535:
        parser.error("--grpc-port must be a port number, or 0 to turn gRPC off")
    if args.runtime not in RUNTIMES:  # argparse does not check a default from the environment
        parser.error(f"--runtime must be one of {', '.join(RUNTIMES)}")
    if args.access_log not in access_log.MODES:  # nor this one
        parser.error(f"--access-log must be one of {', '.join(access_log.MODES)}")
    if args.max_delay_ms < 0 or args.drain_seconds < 0:
        parser.error("--max-delay-ms and --drain-seconds must not be negative")
    try:
        traces = tracing.settings_from_env(env)
    except ValueError as exc:
        parser.error(str(exc))
    return Settings(
        zoo=args.zoo,
        graph=args.graph,
        signature=args.signature,
        signature_name=args.signature_name,
        prepared=args.prepared,
        # `model.tar.gz` is served as `model`.
        name=args.name or args.zoo or Path(args.graph.name.removesuffix(".tar.gz")).stem,
        model_dir=args.model_dir,
        sha256=args.sha256,
        runtime=args.runtime,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        max_pixels=args.max_pixels,
        max_inflight=args.max_inflight,
        executor_threads=executor_threads,
        intra_op_threads=args.intra_op_threads or cpus,
        interpreters=interpreters,
        interpreter_threads=interpreter_threads,
        # Only worth an interpreter where it runs more threads than the pool's.
        lone_call_threads=lone_call_threads if lone_call_threads > interpreter_threads else 0,
        pipelines=args.pipelines,
        inter_op_threads=args.inter_op_threads,
        max_batch_size=args.max_batch_size,
        max_delay_ms=args.max_delay_ms,
        drain_seconds=args.drain_seconds,
        token_file=args.token_file,
        auth_scope=args.auth_scope,
        log_level=args.log_level,
        access_log=args.access_log,
        tracing=traces,
    )
