"""Optional bearer-token authentication, with tokens read from a file (a mounted Secret)."""

from __future__ import annotations

import contextlib
import hmac
import os
from pathlib import Path

from modelzoo_server.errors import Unauthorized


class TokenFile:
    """Tokens, one per line (blank lines and `#` comments ignored), re-read when the file
    changes so a rotated Secret takes effect without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._reload()
        if not self._tokens:
            raise ValueError(f"token file {path} holds no token")

    def _reload(self) -> None:
        info = os.stat(self.path)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        self._tokens = tuple(
            line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
        )
        self._stamp = stamp

    def check(self, header: str | None) -> None:
        """Raise Unauthorized unless `header` is `Bearer <a known token>`."""
        # Keep the tokens we have if a Secret update is half-written.
        with contextlib.suppress(OSError):
            self._reload()
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        offered = header.removeprefix("Bearer ").strip().encode()
        # Compare against every token, without an early exit, in constant time each.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(offered, token)
        if not matched:
            raise Unauthorized("invalid bearer token")
