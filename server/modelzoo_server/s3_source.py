"""Reading one object of an S3-compatible store, for `modelzoo-fetch --s3-*` (source.s3).

MinIO's client signs the requests (AWS Signature V4) with the credentials of the
standard environment variables AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the init
container gets them from the model's Secret; without them the requests are anonymous).
The object is streamed in chunks; the caller hashes and writes them. Refusals that
retrying cannot fix (no such object or bucket, unknown key, bad signature, denied) are
`SourceRefused`, with a line that says which and never the credentials.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

# S3 error codes → what the user should look at.
REFUSALS = {
    "NoSuchKey": "no such object",
    "NoSuchBucket": "no such bucket",
    "InvalidAccessKeyId": "the store does not know the access key (the Secret's AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": (
        "the store refused the request's signature (the Secret's AWS_SECRET_ACCESS_KEY)"
    ),
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "AuthorizationHeaderMalformed": "the store refused the request (is the region right?)",
}


class S3Failure(Exception):
    """The object could not be read; `permanent` when retrying cannot help."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class S3Location:
    endpoint: str  # http(s)://host[:port]
    bucket: str
    key: str
    region: str | None = None
    path_style: bool = False
    ca_pem: str | None = None  # the CAs the endpoint's certificate chains to (PEM)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key} at {self.endpoint}"


def _client(where: S3Location, env: Mapping[str, str], timeout: float) -> Minio:
    parts = urlsplit(where.endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise S3Failure(
            f"the S3 endpoint must be http(s)://host[:port], not {where.endpoint!r}", True
        )
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
        cert_reqs="CERT_REQUIRED",
        ca_cert_data=where.ca_pem or None,
    )
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    client = Minio(
        parts.netloc,
        access_key=key or None,
        secret_key=secret or None,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        secure=parts.scheme == "https",
        region=where.region or None,
        http_client=http,
    )
    if where.path_style:
        client.disable_virtual_style_endpoint()
    return client


@contextlib.contextmanager
def s3_chunks(
    where: S3Location,
    chunk: int,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[Iterator[bytes]]:
    """The object's bytes, in chunks of at most `chunk`; S3Failure when they cannot be read."""
    env = os.environ if env is None else env
    anonymous = not env.get("AWS_ACCESS_KEY_ID")
    try:
        response = _client(where, env, timeout).get_object(where.bucket, where.key)
    except S3Error as exc:
        why = REFUSALS.get(exc.code or "")
        if why is None:
            raise S3Failure(f"cannot read {where}: {exc.code}: {exc.message}", False) from exc
        if anonymous and exc.code in ("AccessDenied", "AllAccessDisabled"):
            why += " to an anonymous request (no secretName)"
        raise S3Failure(f"cannot read {where}: {why} ({exc.code})", True) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise S3Failure(f"cannot reach {where.endpoint}: {exc}", False) from exc
    try:
        yield response.stream(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise S3Failure(f"reading {where} broke off: {exc}", False) from exc
    finally:
        response.close()
        response.release_conn()
