"""The tests' S3-compatible store (tests/cluster/go/s3server, built with the cluster
binaries): a real server that checks every request's AWS Signature V4, with a
read-write identity that uploads and a read-only one, which is what a model's Secret
holds."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from minio import Minio

from tests.servers import stop

WRITER = ("modelzoo-writer", "writer-secret-7c1d2e9f0a4b")
READER = ("modelzoo-reader", "reader-secret-3f8a6b0c5d2e")
REGION = "us-east-1"


@dataclass
class S3Store:
    endpoint: str  # http(s)://host:port
    ca_pem: str | None = None

    def client(self, identity: tuple[str, str] = WRITER) -> Minio:
        parts = urlsplit(self.endpoint)
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_cert_data=self.ca_pem)
        return Minio(
            parts.netloc,
            access_key=identity[0],
            secret_key=identity[1],
            secure=parts.scheme == "https",
            region=REGION,
            http_client=http,
        )

    def put(self, bucket: str, key: str, data: bytes) -> None:
        client = self.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.put_object(bucket, key, io.BytesIO(data), len(data))


@contextlib.contextmanager
def s3_store(
    bin_dir: Path, workdir: Path, host: str = "127.0.0.1", tls: tuple[Path, Path, str] | None = None
) -> Iterator[S3Store]:
    """The store on a free port of `host`, stopped on exit (its log in `workdir`); with
    `tls` (certificate(): cert, key, the CA's PEM) it serves HTTPS."""
    workdir.mkdir(parents=True, exist_ok=True)
    credentials = workdir / "credentials.json"
    credentials.write_text(
        json.dumps(
            [
                {"accessKey": WRITER[0], "secretKey": WRITER[1], "readOnly": False},
                {"accessKey": READER[0], "secretKey": READER[1], "readOnly": True},
            ]
        )
    )
    argv = [str(bin_dir / "s3server"), "-addr", f"{host}:0", "-credentials", str(credentials)]
    if tls:
        argv += ["-tls-cert", str(tls[0]), "-tls-key", str(tls[1])]
    log = workdir / "s3server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sink, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()  # printed once it listens
        if not address:
            raise RuntimeError(f"s3server did not start: {log.read_text()}")
        scheme = "https" if tls else "http"
        yield S3Store(f"{scheme}://{address}", tls[2] if tls else None)
    finally:
        stop(process, grace=5)


def certificate(workdir: Path, ip: str) -> tuple[Path, Path, str]:
    """A private CA and a server certificate for `ip` (openssl): (cert, key, CA's PEM)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)

    workdir.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=modelzoo test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
            "-keyout", "tls.key", "-out", "tls.csr")  # fmt: skip
    (workdir / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "tls.crt")  # fmt: skip
    return workdir / "tls.crt", workdir / "tls.key", (workdir / "ca.crt").read_text()
