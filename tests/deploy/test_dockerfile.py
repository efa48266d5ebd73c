"""The Dockerfile, checked without a Docker engine (none here, none needed in CI).

What an image build would do is checked piece by piece: its install step is the script that
`make install` (and so CI) runs; the files it copies exist and reach the build context; the
runtime stage runs as a non-root user, installs nothing and has no compilers; and its
configuration (ENV, ENTRYPOINT + CMD, HEALTHCHECK) serves and reports ready when run here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MODELS, REPO_ROOT, free_port, require
from dockerfile import Stage, dockerignore_patterns, exec_form, included_by_dockerignore, read_stages

DOCKERFILE = REPO_ROOT / "Dockerfile"
INSTALL_SCRIPT = "scripts/install.sh"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc", "cmake", "rustc", "cargo")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read_stages(DOCKERFILE)


@pytest.fixture(scope="module")
def build(stages: list[Stage]) -> Stage:
    return next(stage for stage in stages if stage.name == "build")


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    assert stages[-1].name == "runtime", "the last stage is the image that is run"
    return stages[-1]


def test_the_image_is_built_in_two_stages_from_one_slim_base(stages: list[Stage]) -> None:
    assert [stage.name for stage in stages] == ["build", "runtime"]
    assert {stage.base for stage in stages} == {"${PYTHON_IMAGE}"}
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert default_base and "slim" in default_base.group(1)


def test_the_build_stage_installs_with_the_script_make_install_runs(build: Stage) -> None:
    runs = [shlex.split(args) for args in build.all("RUN")]
    assert runs == [["sh", INSTALL_SCRIPT, "/opt/specks/venv"]]  # the whole install, and nothing else
    # What `make install` runs (what CI runs before the tests), as make itself expands it.
    dry_run = subprocess.run(
        ["make", "-n", "-B", "install", "VENV=/tmp/specks-venv"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert dry_run.returncode == 0, dry_run.stderr
    make_runs = [shlex.split(line) for line in dry_run.stdout.splitlines() if INSTALL_SCRIPT in line]
    assert len(make_runs) == 1, dry_run.stdout
    assert make_runs[0][-3:] == [INSTALL_SCRIPT, "/tmp/specks-venv", "--editable"]
    # The only difference, the editable mode, is one branch of the script.
    script = (REPO_ROOT / INSTALL_SCRIPT).read_text()
    assert "--editable) pip_install -e . ;;" in script and '"") pip_install . ;;' in script


def test_the_build_stage_copies_what_the_script_needs_and_the_context_holds_it(build: Stage) -> None:
    copied: list[str] = []
    for args in build.all("COPY"):
        *sources, _ = shlex.split(args)
        copied += sources
    assert {"pyproject.toml", "README.md", "src", INSTALL_SCRIPT} <= set(copied)
    patterns = dockerignore_patterns(REPO_ROOT / ".dockerignore")
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
        assert included_by_dockerignore(patterns, source), f"{source} is left out of the build context"
    for heavy in (".venv", ".git", "tests", "src/specks.egg-info"):
        assert not included_by_dockerignore(patterns, heavy), f"{heavy} would be sent to the builder"


def test_the_model_is_converted_into_the_image_not_at_run_time(build: Stage, runtime: Stage) -> None:
    """The script loads the default model once (converting it into SPECKS_CACHE_DIR) at build time."""
    assert "specks\" models" in (REPO_ROOT / INSTALL_SCRIPT).read_text()
    cache = build.env()["SPECKS_CACHE_DIR"]
    assert runtime.env()["SPECKS_CACHE_DIR"] == cache
    assert cache.startswith("/opt/specks/")
    assert "--from=build /opt/specks /opt/specks" in runtime.all("COPY")


def test_the_runtime_stage_runs_as_a_non_root_user_and_installs_nothing(runtime: Stage) -> None:
    user = runtime.all("USER")
    assert len(user) == 1
    uid = user[0].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit()
    runs = runtime.all("RUN")
    assert len(runs) == 1 and runs[0].startswith("useradd ") and f"--uid {uid}" in runs[0]


@pytest.mark.parametrize("stage_name", ["build", "runtime"])
def test_no_stage_installs_a_compiler(stages: list[Stage], stage_name: str) -> None:
    stage = next(s for s in stages if s.name == stage_name)
    for run in stage.all("RUN"):
        words = set(re.split(r"[\s;&|]+", run))
        assert not words & set(COMPILERS), f"{stage_name}: {run}"
        assert "apt-get" not in words and "apk" not in words, f"{stage_name} installs system packages: {run}"


def test_the_runtime_is_configured_by_specks_variables(runtime: Stage) -> None:
    env = runtime.env()
    assert env["SPECKS_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert runtime.all("EXPOSE") == [env["SPECKS_PORT"]]
    assert exec_form(runtime.all("ENTRYPOINT")[0]) == ["specks"]
    assert exec_form(runtime.all("CMD")[0]) == ["serve"]
    healthcheck = runtime.all("HEALTHCHECK")
    assert len(healthcheck) == 1 and "/ready" in healthcheck[0]


def healthcheck_command(runtime: Stage) -> list[str]:
    args = runtime.all("HEALTHCHECK")[0]
    return exec_form(args[args.index("CMD") :])


@pytest.mark.slow
def test_the_runtime_configuration_serves_and_turns_healthy(runtime: Stage, cache_dir: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV (host and port moved to loopback), then its HEALTHCHECK.

    The installed `specks` stands in for the image's. The check fails before the server is
    ready and after it stopped, and passes in between.
    """
    venv_bin = Path(sys.executable).parent
    port = str(free_port())
    env = {**os.environ, **runtime.env()}
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        SPECKS_HOST="127.0.0.1",
        SPECKS_PORT=port,
        SPECKS_CACHE_DIR=str(cache_dir),
        SPECKS_WORKERS="1",
        SPECKS_MODEL=str(require(MODELS / "yolov5n.onnx")),  # as `docker run -e SPECKS_MODEL=...` would
    )
    command = exec_form(runtime.all("ENTRYPOINT")[0]) + exec_form(runtime.all("CMD")[0])
    check = healthcheck_command(runtime)
    assert shutil.which(check[0], path=env["PATH"])

    def healthy() -> bool:
        return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

    assert not healthy()  # nothing listens yet
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not healthy():
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "never healthy"
            time.sleep(0.5)
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0
    assert not healthy()
