"""tools/source_version.py: the version install.sh gives a release installed from a checkout,
read from the source as setuptools reads it for the wheel."""

import subprocess
import sys
from pathlib import Path

import pytest

import edged
from tests.helpers.nodes import ROOT

SCRIPT = ROOT / "tools" / "source_version.py"


def run(checkout: Path) -> subprocess.CompletedProcess[str]:
    # -I: as install.sh runs it, with a Python that has none of edged's dependencies
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(checkout)], capture_output=True, text=True
    )


def test_the_version_of_this_checkout_is_the_one_edged_reports() -> None:
    out = run(ROOT)
    assert (out.returncode, out.stdout) == (0, f"{edged.__version__}\n")


def tree(tmp_path: Path, init: str) -> Path:
    (tmp_path / "edged").mkdir()
    (tmp_path / "edged" / "__init__.py").write_text(init)
    return tmp_path


def test_a_version_given_as_a_literal_among_other_code_is_read(tmp_path: Path) -> None:
    out = run(tree(tmp_path, 'import os\n"""doc"""\n__version__ = "2.3.0rc1"\nX = 1\n'))
    assert (out.returncode, out.stdout) == (0, "2.3.0rc1\n")


@pytest.mark.parametrize(
    "init",
    [
        "",
        "__version__ = compute()\n",  # not what setuptools' attr reads without importing
        "__version__ = 1.0\n",
        "__version__ = (\n",  # a syntax error
        "from ._version import __version__\n",
    ],
)
def test_a_tree_without_a_literal_version_is_refused_saying_why(tmp_path: Path, init: str) -> None:
    out = run(tree(tmp_path, init))
    assert out.returncode == 1 and out.stdout == ""
    assert "cannot tell the version of" in out.stderr


def test_a_missing_tree_is_refused_saying_why(tmp_path: Path) -> None:
    out = run(tmp_path / "nowhere")
    assert out.returncode == 1 and "No such file" in out.stderr
