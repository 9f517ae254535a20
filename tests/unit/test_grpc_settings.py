"""--grpc-port: on by default at 8081, MODELZOO_GRPC_PORT like every flag, 0 turns it off."""

from __future__ import annotations

import pytest

from modelzoo_server.settings import parse_settings

pytestmark = pytest.mark.unit


def test_grpc_port_default_env_and_off() -> None:
    assert parse_settings(["--zoo", "mtcnn"], env={}).grpc_port == 8081
    assert parse_settings(["--zoo", "mtcnn"], env={"MODELZOO_GRPC_PORT": "9001"}).grpc_port == 9001
    assert parse_settings(["--zoo", "mtcnn", "--grpc-port", "0"], env={}).grpc_port == 0


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_grpc_port_out_of_range_is_refused(port: str, capsys) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--zoo", "mtcnn", "--grpc-port", port], env={})
    assert "--grpc-port must be a port number" in capsys.readouterr().err
