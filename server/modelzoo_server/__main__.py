"""`modelzoo-server`: load one model, then serve it until SIGTERM (which drains first)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.log import access_logger
from opentelemetry.trace import Tracer

from modelzoo_models.contract import RecordError, Unservable
from modelzoo_server import access_log, tracing
from modelzoo_server.app import create_app
from modelzoo_server.appkeys import DRAIN, MODEL
from modelzoo_server.auth import TokenFile
from modelzoo_server.grpc_server import GrpcServer
from modelzoo_server.imaging import ImageLimits
from modelzoo_server.malloc import keep_freed_memory
from modelzoo_server.metrics import Metrics
from modelzoo_server.model import ServedModel
from modelzoo_server.model_entry import ModelEntry, from_catalog
from modelzoo_server.runtime import configure_threads
from modelzoo_server.runtimes import TENSORFLOW, reason, runs_pipeline
from modelzoo_server.runtimes import choose as choose_runtime
from modelzoo_server.settings import Settings, parse_settings
from modelzoo_server.user_graph import graph_entry

log = logging.getLogger("modelzoo")


def resolve_entry(settings: Settings) -> ModelEntry:
    """The model to serve and its record: the zoo's catalog, or the prepare step's."""
    if settings.zoo:
        entry = from_catalog(settings.model_dir, settings.zoo, settings.name)
        if settings.sha256 and entry.sha256 and settings.sha256.lower() != entry.sha256:
            raise RecordError(f"--sha256 does not match the catalog's sha256 for {settings.zoo!r}")
        return entry
    return graph_entry(settings)


def process_age() -> float:
    """Seconds since this process started (Linux: /proc), for the start-up log."""
    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return uptime - started / os.sysconf("SC_CLK_TCK")


def build_model(
    settings: Settings,
    metrics: Metrics,
    executor: ThreadPoolExecutor,
    tracer: Tracer = tracing.NO_TRACER,
) -> ServedModel:
    """Resolve, check, import and warm up the model (blocking)."""
    entry = resolve_entry(settings)
    runtime = choose_runtime(entry, settings.runtime)
    log.info("%s runs on %s: %s", entry.name, runtime, reason(entry, settings.runtime, runtime))
    pipeline = runs_pipeline(entry)
    members, threads, lone = settings.litert_members(pipeline)
    if runtime == TENSORFLOW:  # on LiteRT, TensorFlow is never imported
        configure_threads(settings.intra_op_threads, settings.inter_op_threads)
    else:
        log.info(
            "%s: %d LiteRT %s × %d thread(s)%s, %d executor threads",
            entry.name,
            members,
            "pipeline(s)" if pipeline else "interpreter(s)",
            threads,
            f", and one with {lone} for a lone call" if lone else "",
            settings.executor_threads,
        )
    model = ServedModel(
        entry,
        metrics,
        executor,
        max_inflight=settings.max_inflight,
        max_batch_size=settings.max_batch_size,
        max_delay_ms=settings.max_delay_ms,
        image_limits=ImageLimits(max_pixels=settings.max_pixels),
        runtime=runtime,
        threads=threads,  # LiteRT's; TensorFlow's are configured above
        interpreters=members,
        lone_threads=lone,
        tracer=tracer,
    )
    log.info("%s: dynamic batching %s", entry.name, model.batching)
    log.info(
        "loading %s on %s, %.2fs after the process started (interpreter and imports)",
        entry.name,
        runtime,
        process_age(),
    )
    model.load()
    return model


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ info and warning lines (grappler cost estimates, oneDNN notes)
    # drown the server's own log; errors still show. Set it explicitly to override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    heap = keep_freed_memory()  # before the model's own buffers are allocated
    executor = ThreadPoolExecutor(settings.executor_threads, thread_name_prefix="infer")
    try:
        tokens = TokenFile(settings.token_file) if settings.token_file else None
    except (OSError, ValueError) as exc:
        print(f"modelzoo-server: cannot read --token-file: {exc}", file=sys.stderr)
        return 2
    # Before the app is created: the aiohttp instrumentation hooks into its construction.
    otel = tracing.start(settings.tracing)
    try:
        model = build_model(settings, Metrics(), executor, otel.tracer)
    except Unservable as exc:
        print(f"modelzoo-server: refusing to serve: {exc}", file=sys.stderr)
        return 2
    log.info("%s", heap)  # here: a refusal above stays one line
    try:
        asyncio.run(serve(create_app(settings, model, tokens), settings, tokens, otel))
    except OSError as exc:  # a port already taken, an address not ours
        print(f"modelzoo-server: cannot listen: {exc}", file=sys.stderr)
        return 2
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        otel.shutdown()  # exports the spans still queued
    return 0


async def serve(
    app: web.Application,
    settings: Settings,
    tokens: TokenFile | None = None,
    otel: tracing.Tracing = tracing.OFF,
) -> None:
    """Serve HTTP (and gRPC unless --grpc-port 0) until SIGTERM/SIGINT, then drain: stop
    listening, finish what is in flight."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.drain_seconds,
        # aiohttp's own line per request is the `text` access log; `json` replaces it.
        access_log=access_logger if settings.access_log == access_log.TEXT else None,
    )
    await runner.setup()
    grpc_server = None
    try:
        if settings.grpc_port:
            grpc_server = GrpcServer(settings, app[MODEL], app[DRAIN], tokens, otel)
            await grpc_server.start()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
    except OSError:
        if grpc_server is not None:
            await grpc_server.stop()
        await runner.cleanup()
        raise
    log.info("serving %s on http://%s:%d", app[MODEL].name, settings.host, settings.port)
    if grpc_server is not None:
        log.info("serving %s over gRPC on %s", app[MODEL].name, grpc_server.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    drain = app[DRAIN]
    drain.draining = True  # readiness fails from now on
    if grpc_server is not None:
        await grpc_server.begin_drain(settings.drain_seconds)
    await site.stop()  # no new connections; open ones carry on
    log.info("draining: waiting up to %.0fs for requests in flight", settings.drain_seconds)
    if not await drain.wait_hung_up(lambda: runner.server.connections, settings.drain_seconds):
        log.warning("drain timed out; closing the remaining connections")
    if grpc_server is not None:
        await grpc_server.stop()  # what is left: health watchers, calls past the drain time
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
