"""`modelzoo-fetch --url URL --sha256 HEX --out FILE`: the init container that downloads
a model's graph into the pod's emptyDir.

The file is streamed to a temporary name next to FILE while its sha256 is computed and
renamed into place only when the digest matches: a wrong or truncated download never
reaches the server. A FILE already there with the right digest is kept (a restarted
pod does not download again). No TensorFlow here (the standard library and the contract
module only), so the init container starts fast.

A SavedModel `.tar.gz` is kept as downloaded, so the server checks the same sha256 over
the same bytes it then unpacks (into its own /tmp: the model volume is read-only to it).
Here every member is checked by the server's rules (modelzoo_models.safe_tar: no links,
no absolute or `..` paths, size and count caps) before the archive is put in place, so a
hostile or broken archive fails the init container, with its reason, not the server.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from modelzoo_models.contract import sha256_file
from modelzoo_models.safe_tar import UnsafeArchive, check_archive, is_archive

CHUNK = 1 << 20


class FetchError(Exception):
    """The graph could not be fetched or is not the one the spec names."""


class ChecksumError(FetchError):
    """The spec's sha256 is malformed, or the bytes do not match it: retrying cannot help."""


class ArchiveRefused(FetchError):
    """The bytes match, but are a `.tar.gz` the server would refuse: retrying cannot help."""


def fetch(
    url: str, sha256: str, out: Path, *, timeout: float = 60.0, max_bytes: int = 4 << 30
) -> bool:
    """Download `url` to `out`, checking `sha256`; False when `out` was already right."""
    sha256 = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ChecksumError("--sha256 must be 64 hex digits")
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"only http(s) URLs are fetched, not {url!r}")
    if out.exists() and sha256_file(out) == sha256:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "modelzoo-fetch/1"})
        with (
            os.fdopen(fd, "wb") as sink,
            urllib.request.urlopen(request, timeout=timeout) as response,
        ):
            for chunk in iter(lambda: response.read(CHUNK), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url} is larger than {max_bytes} bytes")
                digest.update(chunk)
                sink.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            raise ChecksumError(
                f"sha256 mismatch for {url}: expected {sha256}, got {got} ({size} bytes); "
                "refusing to use it"
            )
        if is_archive(tmp):
            check_archive(tmp)
        os.replace(tmp, out)
        return True
    except UnsafeArchive as exc:
        raise ArchiveRefused(f"refusing the archive from {url}: {exc}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot download {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelzoo-fetch", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network read")
    parser.add_argument("--retries", type=int, default=3, help="attempts for network errors")
    args = parser.parse_args(argv)
    for attempt in range(1, max(1, args.retries) + 1):
        try:
            fetched = fetch(args.url, args.sha256, args.out, timeout=args.timeout)
        except FetchError as exc:
            print(f"fetch: {exc}", file=sys.stderr, flush=True)
            if isinstance(exc, ChecksumError | ArchiveRefused) or attempt >= args.retries:
                return 1
            time.sleep(min(30, 2**attempt))
            continue
        print(f"fetch: {args.out} {'downloaded' if fetched else 'already present'}, sha256 ok")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
