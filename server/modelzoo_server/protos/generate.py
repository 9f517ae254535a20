"""`python -m modelzoo_server.protos.generate`: rewrite grpc_predict_v2_pb2.py from the .proto.

The generated module is committed, so neither `make venv` nor the image needs a protobuf
compiler; tests/unit/test_grpc_proto.py regenerates it and fails when the two differ.
Needs the test extra (grpcio-tools, pinned so the output is byte-stable, and ruff).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "grpc_predict_v2.proto"
MODULE = HERE / "grpc_predict_v2_pb2.py"

# protoc registers the messages in protobuf's process-wide default pool. tritonclient.grpc
# registers its own copy of package `inference` there, and the two would clash in one
# process (a test imports both); a pool of the module's own keeps the server's apart.
DEFAULT_POOL = "_descriptor_pool.Default()"
OWN_POOL = "_descriptor_pool.DescriptorPool()"
HEADER = "# ruff: noqa\n# Generated from grpc_predict_v2.proto by generate.py; do not edit.\n"


def generate() -> str:
    """The module's text, as it should be committed."""
    with tempfile.TemporaryDirectory() as out:
        # Its own process: protoc's C++ in a process that has loaded TensorFlow (which
        # carries its own protobuf) crashes.
        protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={out}"]
        subprocess.run([*protoc, PROTO.name], check=True)
        text = (Path(out) / MODULE.name).read_text()
    if text.count(DEFAULT_POOL) != 1:
        raise RuntimeError(f"expected one {DEFAULT_POOL} in protoc's output")
    text = HEADER + text.replace(DEFAULT_POOL, OWN_POOL)
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(MODULE), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return formatted.stdout


def main() -> int:
    MODULE.write_text(generate())
    print(f"wrote {MODULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
