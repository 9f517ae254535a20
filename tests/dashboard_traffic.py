"""Bounded inference traffic against a real `modelzoo-server` serving an image
classifier with a 64×64×1 input (the zoo's `emotion`): /infer with a photo, V2 REST infer,
and the client errors a dashboard should show (a non-image, a tensor of the wrong shape)."""

from __future__ import annotations

import contextlib
import json
import math
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from functools import cache

from tests import photos


def _v2(shape: list[int]) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": shape, "data": [0.5] * math.prod(shape)}
    return json.dumps({"inputs": [tensor]}).encode()


V2_OK = _v2([1, 64, 64, 1])
V2_BAD_SHAPE = _v2([1, 3])


@cache
def _photo() -> bytes:
    return photos.encode_jpeg(photos.chelsea())


def _request(url: str, model: str, n: int) -> urllib.request.Request:
    """The n-th request of the mix: mostly good /infer and V2, a few 4xx."""
    if n % 10 == 9:
        headers = {"Content-Type": "image/jpeg"}
        return urllib.request.Request(f"{url}/infer", b"not an image", headers)
    if n % 10 == 8:
        return urllib.request.Request(f"{url}/v2/models/{model}/infer", V2_BAD_SHAPE)
    if n % 3 == 0:
        return urllib.request.Request(f"{url}/v2/models/{model}/infer", V2_OK)
    return urllib.request.Request(f"{url}/infer", _photo(), {"Content-Type": "image/jpeg"})


def send(url: str, model: str, n: int) -> int:
    """Send the n-th request of the mix; its HTTP status."""
    try:
        with urllib.request.urlopen(_request(url, model, n), timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


@contextlib.contextmanager
def background_load(
    url: str, model: str, concurrency: int, pause: float = 0.0
) -> Iterator[Counter]:
    """`concurrency` clients, each sending and then waiting `pause` seconds, until the block
    ends; yields the statuses counted so far (complete after the block)."""
    statuses: Counter = Counter()
    lock = threading.Lock()
    done = threading.Event()

    def client(first: int) -> None:
        n = first
        while not done.is_set():
            status = send(url, model, n)
            with lock:
                statuses[status] += 1
            n += concurrency
            done.wait(pause)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
