"""`modelzoo-fetch (--url URL | --s3-endpoint E --s3-bucket B --s3-key K) --sha256 HEX
--out FILE`: the init container that downloads a model's graph into the pod's emptyDir,
from an http(s) URL (source.url) or an S3-compatible store (source.s3, s3_source.py).

The file is streamed to a temporary name next to FILE while its sha256 is computed and
renamed into place only when the digest matches: a wrong or truncated download never
reaches the server. A FILE already there with the right digest is kept (a restarted
pod does not download again). No TensorFlow here, so the init container starts fast.

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from modelzoo_models.contract import sha256_file
from modelzoo_models.safe_tar import UnsafeArchive, check_archive, is_archive
from modelzoo_server.s3_source import S3Failure, S3Location, s3_chunks

CHUNK = 1 << 20
MAX_BYTES = 4 << 30
# source.s3's caBundle, as the operator passes it (PEM text; it is not a secret).
CA_BUNDLE_ENV = "MODELZOO_S3_CA_BUNDLE"


class FetchError(Exception):
    """The graph could not be fetched or is not the one the spec names."""


class ChecksumError(FetchError):
    """The spec's sha256 is malformed, or the bytes do not match it: retrying cannot help."""


class ArchiveRefused(FetchError):
    """The bytes match, but are a `.tar.gz` the server would refuse: retrying cannot help."""


class SourceRefused(FetchError):
    """The store refused the request (no such object, bad credentials): retrying cannot help."""


# Errors that a retry cannot fix.
PERMANENT = (ChecksumError, ArchiveRefused, SourceRefused)


def _check_sha256(sha256: str) -> str:
    sha256 = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ChecksumError("--sha256 must be 64 hex digits")
    return sha256


def _store(chunks: Iterable[bytes], sha256: str, out: Path, source: str, max_bytes: int) -> None:
    """Stream `chunks` to a temporary file next to `out` while hashing them; rename it into
    place only when the digest (and, for an archive, every member) is right."""
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{source} is larger than {max_bytes} bytes")
                digest.update(chunk)
                sink.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            raise ChecksumError(
                f"sha256 mismatch for {source}: expected {sha256}, got {got} ({size} bytes); "
                "refusing to use it"
            )
        if is_archive(tmp):
            check_archive(tmp)
        os.replace(tmp, out)
    except UnsafeArchive as exc:
        raise ArchiveRefused(f"refusing the archive from {source}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    url: str, sha256: str, out: Path, *, timeout: float = 60.0, max_bytes: int = MAX_BYTES
) -> bool:
    """Download `url` to `out`, checking `sha256`; False when `out` was already right."""
    sha256 = _check_sha256(sha256)
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"only http(s) URLs are fetched, not {url!r}")
    if out.exists() and sha256_file(out) == sha256:
        return False
    request = urllib.request.Request(url, headers={"User-Agent": "modelzoo-fetch/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _store(iter(lambda: response.read(CHUNK), b""), sha256, out, url, max_bytes)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot download {url}: {exc}") from exc
    return True


def fetch_s3(
    where: S3Location,
    sha256: str,
    out: Path,
    *,
    timeout: float = 60.0,
    max_bytes: int = MAX_BYTES,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Read the object `where` into `out`, checking `sha256`; False when `out` was right."""
    sha256 = _check_sha256(sha256)
    if out.exists() and sha256_file(out) == sha256:
        return False
    try:
        with s3_chunks(where, CHUNK, timeout, env) as chunks:
            _store(chunks, sha256, out, str(where), max_bytes)
    except S3Failure as exc:
        raise (SourceRefused if exc.permanent else FetchError)(str(exc)) from exc
    except OSError as exc:
        raise FetchError(f"cannot write {out}: {exc}") from exc
    return True


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelzoo-fetch", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="an http(s) URL")
    source.add_argument(
        "--s3-endpoint",
        help="an S3-compatible endpoint, http(s)://host[:port]; credentials from "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (anonymous without them)",
    )
    parser.add_argument("--s3-bucket")
    parser.add_argument("--s3-key")
    parser.add_argument("--s3-region")
    parser.add_argument("--s3-path-style", action="store_true", help="bucket in the path")
    parser.add_argument(
        "--s3-ca-bundle",
        type=Path,
        help=f"PEM file of the endpoint's CAs (or their PEM text in {CA_BUNDLE_ENV})",
    )
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network read")
    parser.add_argument("--retries", type=int, default=3, help="attempts for network errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.s3_endpoint and not (args.s3_bucket and args.s3_key):
        parser.error("--s3-endpoint needs --s3-bucket and --s3-key")
    try:
        ca = args.s3_ca_bundle.read_text() if args.s3_ca_bundle else os.environ.get(CA_BUNDLE_ENV)
    except OSError as exc:
        parser.error(f"--s3-ca-bundle: {exc}")

    def once() -> bool:
        if args.url:
            return fetch(args.url, args.sha256, args.out, timeout=args.timeout)
        where = S3Location(
            args.s3_endpoint, args.s3_bucket, args.s3_key, args.s3_region, args.s3_path_style, ca
        )
        return fetch_s3(where, args.sha256, args.out, timeout=args.timeout)

    for attempt in range(1, max(1, args.retries) + 1):
        try:
            fetched = once()
        except FetchError as exc:
            print(f"fetch: {exc}", file=sys.stderr, flush=True)
            if isinstance(exc, PERMANENT) or attempt >= args.retries:
                return 1
            time.sleep(min(30, 2**attempt))
            continue
        print(f"fetch: {args.out} {'downloaded' if fetched else 'already present'}, sha256 ok")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
