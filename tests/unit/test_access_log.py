"""--access-log: text by default (aiohttp's own line, no JSON), MODELZOO_ACCESS_LOG like every
flag; which client ids are kept; a JSON line only in json mode. The lines the real server
writes are checked in tests/integration/test_access_log.py."""

from __future__ import annotations

import json
import re

import pytest

from modelzoo_server.access_log import AccessLog, RequestRecord, request_id
from modelzoo_server.settings import parse_settings

pytestmark = pytest.mark.unit


def test_access_log_default_env_and_refusal(capsys) -> None:
    assert parse_settings(["--zoo", "mtcnn"], env={}).access_log == "text"
    env = {"MODELZOO_ACCESS_LOG": "json"}
    assert parse_settings(["--zoo", "mtcnn"], env=env).access_log == "json"
    with pytest.raises(SystemExit):
        parse_settings(["--zoo", "mtcnn"], env={"MODELZOO_ACCESS_LOG": "yaml"})
    assert "--access-log must be one of text, json, off" in capsys.readouterr().err


@pytest.mark.parametrize("offered", ["0af7651916cd43dd8448eb211c80319c", "req:1.2_3-x", "a" * 128])
def test_a_safe_client_id_is_kept(offered: str) -> None:
    assert request_id(offered) == offered


@pytest.mark.parametrize("offered", [None, "", "a" * 129, "a b", "a\tb", "é", '"quoted"'])
def test_other_ids_are_replaced_by_fresh_ones(offered: str | None) -> None:
    fresh = request_id(offered)
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert request_id(offered) != fresh  # fresh each time


@pytest.mark.parametrize("mode", ["text", "off"])
def test_only_json_mode_writes_lines(mode: str, capsys) -> None:
    record = RequestRecord("r-1", "mtcnn", "rest", "/infer")
    AccessLog(mode).write(record, "200", 0.5, 10, 20)
    assert capsys.readouterr().out == ""
    AccessLog("json").write(record, "200", 0.5, 10, 20)
    line = json.loads(capsys.readouterr().out)
    assert line["request_id"] == "r-1" and line["latency_seconds"] == 0.5
    assert (line["queue_seconds"], line["batch_size"]) == (None, None)
