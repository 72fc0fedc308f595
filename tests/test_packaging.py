"""edged as install.sh installs it: a real wheel, installed non-editable into a new venv.

The test venv holds an editable install, where every data file is found in the source tree
whether it is in the package or not. A node's venv has only what the wheel carries: the
DBC the CAN drivers fall back on, the kiosk page. Built offline (no build isolation, the
test extra brings setuptools), from a copy of the tree so nothing is written into it.
"""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.nodes import ROOT

NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "test-artifacts",
)


def run(*argv: str | Path, cwd: Path) -> str:
    r = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    return r.stdout


def python(venv: Path, code: str) -> str:
    """Run code with the venv's interpreter, away from the source tree (not on sys.path)."""
    return run(venv / "bin/python", "-c", code, cwd=venv).strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with edged installed from its wheel; its dependencies come from the test venv
    through a .pth line (not the editable edged: a .pth line is not a site directory)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES, symlinks=True)
    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("edged-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    site = Path(python(venv, "import sysconfig; print(sysconfig.get_path('purelib'))"))
    (site / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        *pip,
        "--python",
        venv / "bin/python",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp,
    )
    return venv


def test_the_installed_package_is_not_the_source_tree(installed: Path) -> None:
    where = python(installed, "import edged, drivers; print(edged.__file__, drivers.__file__)")
    for path in where.split():
        assert Path(path).is_relative_to(installed), where


def test_the_shipped_dbc_is_found_in_the_installed_package(installed: Path) -> None:
    out = python(
        installed,
        "import sys\nfrom drivers.can.decoder import SHIPPED_DBC as d, Decoders\nDecoders(d)\n"
        "print('cantools' in sys.modules)\nprint(d)",
    )
    cantools_loaded, where = out.splitlines()
    dbc = Path(where)
    assert dbc.is_relative_to(installed) and dbc.is_file(), out
    assert cantools_loaded == "False", "the DBC's compiled table (fms.dbc.json) is not installed"
    assert dbc.read_bytes() == (ROOT / "config" / "fms.dbc").read_bytes()


def test_an_installed_edged_accepts_a_can_driver_without_a_dbc_option(
    installed: Path, tmp_path: Path
) -> None:
    """The example configs name no DBC: the installed package's own one must do."""
    for example in ["shuttle.toml", "truck.toml"]:
        out = run(installed / "bin/edged", "check-config", ROOT / "config" / example, cwd=tmp_path)
        assert out.strip().endswith(": ok"), out


def test_the_kiosk_page_is_in_the_installed_package(installed: Path) -> None:
    out = python(
        installed, "from edged.kiosk.server import load_static; print(sorted(load_static()))"
    )
    assert "index.html" in out and "kiosk.js" in out


# -- #24: `edged demo` from a wheel -----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["shuttle.toml", "routes/creuse-shuttle.json", "can/shuttle-day.log"]
)
def test_the_demo_config_and_what_it_names_are_in_the_installed_package(
    installed: Path, name: str
) -> None:
    out = python(
        installed,
        "from edged.config import load_config\n"
        "from edged.demo.runner import default_config_path as d\n"
        "load_config(d())\nprint(d())",
    )
    shipped = Path(out).parent / name
    assert shipped.is_relative_to(installed) and shipped.is_file(), out
    assert not shipped.is_symlink()  # a copy in the wheel, not a link back to a checkout
    assert shipped.read_bytes() == (ROOT / "config" / name).read_bytes()


def test_edged_demo_runs_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    out = run(installed / "bin/edged", "demo", "--duration", "2", "--kiosk-port", "0", cwd=tmp_path)
    assert "node said offline" in out, out
    (messages,) = [line for line in out.splitlines() if line.startswith("messages")]
    assert "position" in messages and "0 rejected" in messages, out
