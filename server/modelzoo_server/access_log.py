"""The access log: what each request (REST or gRPC) did, under an id the client can quote.

Every request gets an id: the client's `X-Request-Id` header (gRPC: `x-request-id`
metadata) when it is short and safe to log, else a fresh one; the server returns it in
the same header. With `--access-log json` each request ends as one JSON line on stdout;
`text` (the default) keeps aiohttp's own line per HTTP request; `off` writes neither.
With tracing on, the line also has the request's trace and span ids.

The timings come from the measurements the metrics take anyway: the middleware's latency,
and the queue wait and batch size the model observes (`note_graph_call`, called in the
request's own task, where the record is the context's current one).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

TEXT, JSON, OFF = "text", "json", "off"
MODES = (TEXT, JSON, OFF)
HEADER = "X-Request-Id"
METADATA_KEY = "x-request-id"  # gRPC metadata keys are lower case
# Nothing that could split a log line or a header; UUIDs, ULIDs and trace ids fit.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(offered: str | None) -> str:
    """The client's id when it is safe to log and return, else a fresh one."""
    if offered is not None and _SAFE_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


@dataclass
class RequestRecord:
    request_id: str
    model: str
    protocol: str  # rest | grpc
    route: str  # the route's pattern, or the gRPC method's full name
    started: float = field(default_factory=time.time)
    # Set only when the request reached the graph.
    queue_seconds: float | None = None
    batch_size: int | None = None
    # The request's span (tracing.span_ids), when tracing is on.
    trace_id: str | None = None
    span_id: str | None = None


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("modelzoo_request", default=None)


@contextlib.contextmanager
def recording(record: RequestRecord) -> Iterator[RequestRecord]:
    """Make `record` the current request's, for the code the request runs in this task."""
    token = _CURRENT.set(record)
    try:
        yield record
    finally:
        _CURRENT.reset(token)


def note_graph_call(queue_seconds: float, batch_size: int) -> None:
    """The current request waited `queue_seconds` and ran in a call of `batch_size`."""
    record = _CURRENT.get()
    if record is not None:
        record.queue_seconds = queue_seconds
        record.batch_size = batch_size


class AccessLog:
    def __init__(self, mode: str) -> None:
        self.json = mode == JSON

    def write(
        self,
        record: RequestRecord,
        status: str,
        latency_seconds: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        """`status`: the HTTP status ("200") or the gRPC code's name ("OK")."""
        if not self.json:
            return
        stamp = datetime.fromtimestamp(record.started, UTC).isoformat(timespec="milliseconds")
        trace = {"trace_id": record.trace_id, "span_id": record.span_id}
        line = json.dumps(
            {
                "time": stamp.replace("+00:00", "Z"),
                "request_id": record.request_id,
                "model": record.model,
                "protocol": record.protocol,
                "route": record.route,
                "status": status,
                "latency_seconds": round(latency_seconds, 6),
                "queue_seconds": (
                    None if record.queue_seconds is None else round(record.queue_seconds, 6)
                ),
                "batch_size": record.batch_size,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                **(trace if record.trace_id else {}),
            },
            separators=(",", ":"),
        )
        # One write per line, flushed: a pipe (a container's log) sees whole lines at once.
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
