"""LiteRT's interpreter pool flags and the batching rule: defaults from the CPU quota,
the environment variable, refused values, and which models batch on which runtime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelzoo_models.contract import ModelRecord
from modelzoo_server.model import LITERT_UNBATCHED, why_unbatched
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtimes import LITERT, TENSORFLOW
from modelzoo_server.settings import Settings, parse_settings

pytestmark = pytest.mark.unit


def _parse(*argv: str, cpus: int, env: dict[str, str] | None = None) -> Settings:
    return parse_settings(["--zoo", "m", *argv], env=env or {}, cpus=cpus)


def _pool(settings: Settings) -> tuple[int, int, int, int, int]:
    """(interpreters, threads each, the lone call's interpreter's threads, executor threads,
    TensorFlow's intra-op threads)."""
    return (
        settings.interpreters,
        settings.interpreter_threads,
        settings.lone_call_threads,
        settings.executor_threads,
        settings.intra_op_threads,
    )


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        (1, (1, 1, 0, 2, 1)),
        (2, (2, 1, 2, 2, 2)),
        (4, (4, 1, 4, 4, 4)),
        (8, (4, 2, 8, 8, 8)),  # at most 4 by default: they share the CPUs
        (32, (4, 8, 32, 32, 32)),
    ],
)
def test_one_single_threaded_interpreter_per_cpu_and_one_with_all_by_default(
    cpus: int, expected: tuple[int, int, int, int, int]
) -> None:
    assert _pool(_parse(cpus=cpus)) == expected


def test_what_is_not_given_shares_the_quota_out() -> None:
    # One interpreter with every CPU: no lone call's interpreter, it would be the same.
    assert _pool(_parse("--interpreters", "1", cpus=4)) == (1, 4, 0, 4, 4)
    assert _pool(_parse("--interpreters", "3", cpus=4)) == (3, 1, 4, 4, 4)
    assert _pool(_parse("--intra-op-threads", "2", cpus=4)) == (2, 2, 4, 4, 2)
    argv = ("--interpreters", "3", "--intra-op-threads", "3")
    assert _pool(_parse(*argv, cpus=2)) == (3, 3, 0, 3, 3)
    # More interpreters than CPUs: the executor grows to run them all.
    assert _pool(_parse("--interpreters", "6", cpus=2)) == (6, 1, 2, 6, 2)


def test_the_lone_call_threads() -> None:
    assert _parse("--lone-call-threads", "0", cpus=4).lone_call_threads == 0
    assert _parse("--lone-call-threads", "3", cpus=4).lone_call_threads == 3
    env = {"MODELZOO_LONE_CALL_THREADS": "0"}
    assert _parse(cpus=4, env=env).lone_call_threads == 0


def test_the_default_pool_fits_a_smaller_executor() -> None:
    assert _pool(_parse("--executor-threads", "2", cpus=8)) == (2, 4, 8, 2, 8)


@pytest.mark.parametrize(
    ("argv", "cpus", "expected"),
    [
        ((), 2, (1, 2, 0)),  # one pipeline with every CPU, no lone one: it would be the same
        ((), 8, (1, 8, 0)),
        (("--pipelines", "2"), 2, (2, 1, 2)),
        (("--pipelines", "2"), 8, (2, 4, 8)),
        (("--pipelines", "2", "--lone-call-threads", "0"), 4, (2, 2, 0)),
        (("--pipelines", "3", "--intra-op-threads", "6"), 8, (3, 2, 8)),
    ],
)
def test_mtcnn_runs_one_pipeline_with_every_cpu_by_default(
    argv: tuple[str, ...], cpus: int, expected: tuple[int, int, int]
) -> None:
    settings = _parse(*argv, cpus=cpus)
    assert settings.litert_members(pipeline=True) == expected
    # The interpreter flags' pool is the other models', whatever --pipelines says.
    assert settings.litert_members(pipeline=False) == _pool(settings)[:3]


def test_the_executor_runs_every_pipeline() -> None:
    assert _parse("--pipelines", "5", cpus=2).executor_threads == 5


def test_the_environment_variable() -> None:
    env = {"MODELZOO_INTERPRETERS": "3"}
    assert _parse(cpus=2, env=env).interpreters == 3
    assert _parse("--interpreters", "1", cpus=2, env=env).interpreters == 1


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--interpreters", "0"], {}),
        ([], {"MODELZOO_INTERPRETERS": "0"}),
        (["--interpreters", "two"], {}),
        (["--intra-op-threads", "0"], {}),
        (["--executor-threads", "0"], {}),
        (["--interpreters", "4", "--executor-threads", "2"], {}),
        (["--lone-call-threads", "-1"], {}),
        (["--pipelines", "0"], {}),
        ([], {"MODELZOO_PIPELINES": "0"}),
    ],
    ids=[
        "zero",
        "zero-environment",
        "not-a-number",
        "zero-threads",
        "zero-executor",
        "executor",
        "negative-lone",
        "zero-pipelines",
        "zero-pipelines-environment",
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(*argv, cpus=2, env=env)
    assert exited.value.code == 2


SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
}


def _entry(batchable: bool) -> ModelEntry:
    record = replace(ModelRecord.from_json({"signature": SIGNATURE}, name="m"), batchable=batchable)
    return ModelEntry.of(record, Path("/zoo/m.pb"), "m", "ab" * 32)


def test_only_tensorflow_batches() -> None:
    assert why_unbatched(_entry(batchable=True), TENSORFLOW, 8) is None
    assert why_unbatched(_entry(batchable=True), LITERT, 8) == LITERT_UNBATCHED
    assert why_unbatched(_entry(batchable=True), TENSORFLOW, 1) == "off (--max-batch-size 1)"
    assert "do not stack" in (why_unbatched(_entry(batchable=False), TENSORFLOW, 8) or "")
