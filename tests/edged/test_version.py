"""The version: written once in `edged/__init__.py`, read by pyproject.toml and by the node."""

import importlib.metadata
import subprocess
import sys

import edged


def test_the_installed_distribution_carries_the_version_written_in_the_package() -> None:
    assert importlib.metadata.version("edged") == edged.__version__


def test_importing_edged_parses_no_distribution_metadata() -> None:
    # the daemon imports `edged` first: its version must not cost a METADATA parse per start
    code = "import sys, edged; print(edged.__version__, 'importlib.metadata' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [edged.__version__, "False"]
