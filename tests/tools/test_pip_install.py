"""tools/pip_install.sh: wheels first; build tools only for a dependency without a wheel.

Real pip on a local package folder (no network): wheels and source distributions made here.
The one stand-in is APT_FN, which records the Debian packages it was asked for.
"""

import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.nodes import ROOT

SCRIPT = ROOT / "tools" / "pip_install.sh"


BACKEND = """
import zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version = NAME, VERSION
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\\n" for path in [*files, f"{dist}/RECORD"])
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{wheel}", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel
"""
"""A PEP 517 build backend of a few lines: building needs no setuptools and no network."""


def backend(name: str, version: str) -> str:
    return f"NAME, VERSION = {name!r}, {version!r}\n{BACKEND}"


def sdist(links: Path, name: str, version: str = "1.0") -> None:
    """A source distribution of a one-module package, as PyPI would serve it."""
    base = f"{name}-{version}"
    files = {
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "backend.py": backend(name, version),
    }
    with tarfile.open(links / f"{base}.tar.gz", "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size = len(data)
            tar.addfile(info, BytesIO(data))


def wheel(links: Path, name: str, version: str = "1.0") -> None:
    namespace: dict[str, Any] = {}
    exec(backend(name, version), namespace)
    namespace["build_wheel"](str(links))


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    links = tmp_path_factory.mktemp("links")
    wheel(links, "edgedtest_wheel")
    sdist(links, "edgedtest_sdist")
    sdist(links, "pynfc", "0.1.1")  # the project's pure-Python, source-only dependency
    return links


def pip_install(links: Path, target: Path, *packages: str) -> tuple[int, str, list[str]]:
    """Run the helper; its exit status, what it said, and what APT_FN was asked for."""
    asked = target.parent / "apt-asked"
    script = (
        f'. "{SCRIPT}"\n'
        'say() { printf "==> %s\\n" "$*" >&2; }\n'
        f'record() {{ printf "%s\\n" "$*" >> "{asked}"; }}\n'
        f'pip_install "{sys.executable}" record --target "{target}" --no-index '
        f'--find-links "{links}" --no-cache-dir "$@"\n'
    )
    run = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}", "pip_install", *packages],
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = asked.read_text().splitlines() if asked.exists() else []
    return run.returncode, run.stdout + run.stderr, calls


def test_with_a_wheel_for_everything_no_build_tools_and_no_word_of_a_build(
    links: Path, tmp_path: Path
) -> None:
    code, said, apt = pip_install(links, tmp_path / "t", "edgedtest_wheel")
    assert code == 0, said
    assert apt == []
    assert "build" not in said
    assert (tmp_path / "t" / "edgedtest_wheel.py").exists()


def test_a_pure_source_only_dependency_needs_no_build_tools(links: Path, tmp_path: Path) -> None:
    code, said, apt = pip_install(links, tmp_path / "t", "edgedtest_wheel", "pynfc==0.1.1")
    assert code == 0, said
    assert apt == []
    assert (tmp_path / "t" / "pynfc.py").exists()


def test_a_dependency_without_a_wheel_gets_the_build_tools_and_a_visible_build(
    links: Path, tmp_path: Path
) -> None:
    code, said, apt = pip_install(links, tmp_path / "t", "edgedtest_wheel", "edgedtest_sdist")
    assert code == 0, said
    assert apt == ["build-essential python3-dev libffi-dev cmake libatomic1"]
    assert "no wheel for this machine" in said
    assert "edgedtest_sdist, and maybe others: building from source" in said
    assert "Building wheel for edgedtest" in said  # pip's own progress, not -q
    assert (tmp_path / "t" / "edgedtest_sdist.py").exists()
    assert (tmp_path / "t" / "edgedtest_wheel.py").exists()


def test_a_package_that_exists_nowhere_is_pips_error_and_no_build_tools(
    links: Path, tmp_path: Path
) -> None:
    code, said, apt = pip_install(links, tmp_path / "t", "edgedtest_nowhere")
    assert code != 0
    assert apt == []
    assert "No matching distribution found for edgedtest_nowhere" in said
    assert "pip install failed (its whole log: " in said
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def test_the_helper_passes_shellcheck() -> None:
    if subprocess.run(["which", "shellcheck"], capture_output=True).returncode != 0:
        pytest.skip("shellcheck is not installed (`apt-get install shellcheck`)")
    r = subprocess.run(["shellcheck", SCRIPT], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
