"""`modelzoo-fetch --s3-*` (what a source.s3 model's init container runs) against a real
S3-compatible store on loopback that checks AWS Signature V4 (tests/s3_store.py): the
object is fetched with read-only credentials and pinned by sha256; every refusal is one
line that says which, exit 1, nothing written, and the secret never printed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from minio.error import S3Error

from tests.cluster import harness
from tests.s3_store import READER, WRITER, certificate, s3_store

pytestmark = pytest.mark.cluster
GRAPH = os.urandom(3 << 20)
SHA = hashlib.sha256(GRAPH).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with s3_store(harness.ensure_binaries(), tmp_path_factory.mktemp("s3")) as running:
        running.put("models", "emotion/v1/model.pb", GRAPH)
        yield running


def fetch(store, out: Path, key="emotion/v1/model.pb", sha=SHA, identity=READER, env=None):
    """Run the CLI with only the credentials given (none: anonymous)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if identity:
        clean |= {"AWS_ACCESS_KEY_ID": identity[0], "AWS_SECRET_ACCESS_KEY": identity[1]}
    argv = [
        sys.executable, "-m", "modelzoo_server.fetch", "--s3-endpoint", store.endpoint,
        "--s3-bucket", "models", "--s3-key", key, "--s3-region", "us-east-1",
        "--s3-path-style", "--sha256", sha, "--out", str(out), "--retries", "1",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=clean | (env or {}))
    return done.returncode, (done.stdout + done.stderr).strip()


def test_a_read_only_identity_fetches_the_object_pinned_by_sha256(store, tmp_path):
    code, said = fetch(store, tmp_path / "model.pb")
    assert code == 0, said
    assert (tmp_path / "model.pb").read_bytes() == GRAPH
    # The same identity may not write: the store enforces read-only.
    with pytest.raises(S3Error) as denied:
        store.client(READER).put_object("models", "x.pb", io.BytesIO(b"x"), 1)
    assert denied.value.code == "AccessDenied"


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ({"sha": "0" * 64}, "sha256 mismatch"),
        ({"key": "emotion/v2/model.pb"}, "no such object (NoSuchKey)"),
        ({"identity": (READER[0], "not-the-secret")}, "SignatureDoesNotMatch"),
        ({"identity": ("nobody", READER[1])}, "does not know the access key (the Secret's"),
        ({"identity": None}, "access denied to an anonymous request (no secretName)"),
    ],
)
def test_each_refusal_is_one_line_that_says_which(store, tmp_path, case, why):
    out = tmp_path / "model.pb"
    code, said = fetch(store, out, **case)
    assert code == 1 and why in said.splitlines()[-1], said
    assert not out.exists() and not list(tmp_path.iterdir())  # no partial file either
    assert READER[1] not in said and WRITER[1] not in said


def test_a_private_ca_from_the_environment_verifies_https(tmp_path):
    bins = harness.ensure_binaries()
    tls = certificate(tmp_path / "tls", "127.0.0.1")
    with s3_store(bins, tmp_path / "store", tls=tls) as secure:
        secure.put("models", "emotion/v1/model.pb", GRAPH)
        out = tmp_path / "model.pb"
        code, said = fetch(secure, out)
        assert code == 1 and "certificate verify failed" in said, said  # unknown CA
        code, said = fetch(secure, out, env={"MODELZOO_S3_CA_BUNDLE": tls[2]})
        assert code == 0, said
        assert out.read_bytes() == GRAPH
