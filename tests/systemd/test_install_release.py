"""install.sh lays out the first release as updates do: releases/VERSION, `current`, the
launcher the unit starts, and /opt/edged/venv as a link; a newer install keeps the one
before as `previous`. Run for real into a throw-away root, as tests/systemd/test_install.py."""

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.systemd.test_install import (
    INSTALL,
    PYTHON,
    REPO,
    ids,
    install,
    new_image,
    owner_mode,
    run,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh creates users and chowns files: run as root (CI does)"
)


def stub_wheel(directory: Path, version: str) -> Path:
    """A wheel `edged` whose `python -m edged` prints what it was started with."""
    files = {
        "edged/__init__.py": "",
        "edged/__main__.py": "import os, sys\nprint('stub edged', os.environ.get('EDGED_RELEASE'), *sys.argv[1:])\n",
        f"edged-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: edged\nVersion: {version}\nProvides-Extra: nfc\n"
        ),
        f"edged-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    path = directory / f"edged-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{name},sha256={digest.rstrip(b'=').decode()},{len(text)}")
        record.append(f"edged-{version}.dist-info/RECORD,,")
        whl.writestr(f"edged-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wheels")
    return {v: stub_wheel(d, v) for v in ("0.3.0", "0.4.0")}


def launch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "-I", str(root / "opt/edged/launcher.py"), "--releases",
         str(root / "opt/edged/releases"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_install_lays_out_a_release_the_launcher_starts(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    root = new_image(tmp_path / "root")
    install(root, wheels["0.3.0"])
    releases = root / "opt/edged/releases"
    uid, gid = ids(root, "passwd", "edged"), ids(root, "group", "edged")
    assert owner_mode(releases) == (uid, gid, "0o755")
    assert owner_mode(releases / "0.3.0")[:2] == (uid, gid)
    assert os.readlink(releases / "current") == "0.3.0"
    assert os.readlink(root / "opt/edged/venv") == "releases/current/venv"
    assert json.loads((releases / "0.3.0/release.json").read_text())["version"] == "0.3.0"
    launcher = root / "opt/edged/launcher.py"
    assert launcher.read_bytes() == (REPO / "edged/release/launcher.py").read_bytes()
    assert owner_mode(launcher) == (0, 0, "0o644") and owner_mode(root / "opt/edged")[:2] == (0, 0)
    out = launch(root, "run", "--config", "/etc/edged/edged.toml")
    assert out.stdout.strip() == "stub edged 0.3.0 run --config /etc/edged/edged.toml", out.stderr


def test_a_newer_install_keeps_the_one_before_as_previous(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    root = new_image(tmp_path / "root")
    install(root, wheels["0.3.0"])
    install(root, wheels["0.4.0"])
    status = json.loads(launch(root, "--status").stdout)
    assert status["current"] == "0.4.0" and status["previous"] == "0.3.0"
    assert status["releases"] == ["0.3.0", "0.4.0"] and status["trial"] is None
    assert "stub edged 0.4.0" in launch(root, "run").stdout


def test_an_install_over_the_old_single_venv_moves_it_into_the_release_tree(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    root = new_image(tmp_path / "root")
    old = root / "opt/edged/venv"
    subprocess.run([str(PYTHON), "-m", "venv", "--without-pip", str(old)], check=True)
    install(root, wheels["0.3.0"])
    assert old.is_symlink() and (old / "bin/python").exists()


def install_fails(root: Path, tmp_path: Path, name: str) -> None:
    """install.sh given a file named as wheel `name` that is no wheel: pip refuses it."""
    broken = tmp_path / "broken" / name
    broken.parent.mkdir()
    broken.write_bytes(b"not a wheel")
    r = run(INSTALL, "--root", str(root), "--wheel", str(broken), "--python", str(PYTHON))
    assert r.returncode != 0, "pip took a file that is no wheel"


def test_a_reinstall_of_the_running_release_that_fails_midway_starts_the_previous_one(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    """install.sh run again for the version that runs changes its venv in place: failing
    midway (here pip refuses the wheel; a power cut likewise) it left that release's
    release.json, and the launcher started a venv half replaced as a complete release."""
    root = new_image(tmp_path / "root")
    install(root, wheels["0.3.0"])
    install(root, wheels["0.4.0"])
    install_fails(root, tmp_path, wheels["0.4.0"].name)
    assert not (root / "opt/edged/releases/0.4.0/release.json").exists()
    assert "stub edged 0.3.0" in launch(root, "run").stdout
    install(root, wheels["0.4.0"])  # once it succeeds, it runs again
    assert "stub edged 0.4.0" in launch(root, "run").stdout


def test_a_failed_reinstall_of_the_only_release_still_leaves_it_to_start(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    """With no other release to fall back on, release.json taken away before pip left none
    to start: a reinstall whose pip failed before it changed anything (here a file that is
    no wheel; in the field, no network) left a node that started nothing at its next boot."""
    root = new_image(tmp_path / "root")
    install(root, wheels["0.3.0"])
    install_fails(root, tmp_path, wheels["0.3.0"].name)
    assert "stub edged 0.3.0" in launch(root, "run").stdout
