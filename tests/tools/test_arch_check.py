"""tools/arch_check.sh: what it asks for and what it reads of this machine, without a root.

The check itself (debootstrap, QEMU, the demo and the driver tests in an emulated root) takes
15-45 minutes: it is run by hand (`sudo tools/arch_check.sh armhf`), and its results are in
the README's supported-targets table. These tests hold the parts that decide what it runs.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.nodes import ROOT

SCRIPT = ROOT / "tools" / "arch_check.sh"


def run(
    *args: str, apt: Path | None = None, **changes: str | None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if apt is not None:
        env["APT_ETC"] = str(apt)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env
    )


def dry(apt: Path, arch: str = "armhf", **env: str | None) -> dict[str, str]:
    r = run(arch, "--dry-run", "--root", str(apt.parent / "root"), apt=apt, **env)
    assert r.returncode == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


@pytest.fixture
def apt(tmp_path: Path) -> Path:
    (tmp_path / "apt" / "sources.list.d").mkdir(parents=True)
    return tmp_path / "apt"


def test_the_mirror_comes_from_a_deb822_source_with_a_comment_between_its_fields(
    apt: Path,
) -> None:
    """This machine's own debian.sources: the Types line is not the stanza's last."""
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert dry(apt)["mirror"] == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_one_line_source_with_options(apt: Path) -> None:
    (apt / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] https://other.example/node nodistro main\n"
        "deb [signed-by=/usr/share/keyrings/debian.gpg] http://ftp.example/debian bookworm main\n"
    )
    assert dry(apt)["mirror"] == "http://ftp.example/debian"


def test_a_source_for_another_suite_or_not_debian_gives_no_mirror(apt: Path) -> None:
    (apt / "sources.list").write_text("deb http://ftp.example/debian trixie main\n")
    (apt / "sources.list.d" / "node.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: bookworm\n"
    )
    assert dry(apt)["mirror"] == "none"


def test_the_root_sees_pip_configuration_read_only_and_no_system_folder(apt: Path) -> None:
    nspawn = dry(apt)["nspawn"].split()
    assert "--pipe" in nspawn
    assert "--register=no" in nspawn
    binds = [a.removeprefix("--bind-ro=") for a in nspawn if a.startswith("--bind-ro=")]
    assert "/etc/hosts" in binds
    assert not [a for a in nspawn if a.startswith("--bind=")]  # nothing writable
    for bind in binds:
        source, _, inside = bind.partition(":")
        assert Path(source).exists()
        for path in (source, inside or source):
            assert path not in ("/", "/usr") and not path.startswith(("/proc", "/sys", "/dev"))
        assert not (inside or source).startswith("/etc/ssl/")  # the root's own, writable
    pip_vars = {k for k in os.environ if k.startswith("PIP_")}
    assert pip_vars - {"PIP_CERT"} <= {
        a.removeprefix("--setenv=").split("=", 1)[0]
        for a in nspawn
        if a.startswith("--setenv=PIP_")
    }


def test_pips_ca_bundle_is_seen_beside_the_roots_own_which_its_package_rewrites(
    apt: Path, tmp_path: Path
) -> None:
    """Bound over /etc/ssl/certs/ca-certificates.crt, it broke the root's ca-certificates
    package (its postinst replaces that file), and python3-venv with it."""
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    nspawn = dry(apt, PIP_CERT=str(bundle))["nspawn"].split()
    assert f"--bind-ro={bundle}:/etc/arch-check/pip-ca.pem" in nspawn
    assert "--setenv=PIP_CERT=/etc/arch-check/pip-ca.pem" in nspawn
    assert f"--setenv=PIP_CERT={bundle}" not in nspawn


@pytest.mark.parametrize("arch", ["armel", "x86"])
def test_an_unknown_architecture_is_refused_naming_the_known_ones(arch: str) -> None:
    r = run(arch)
    assert r.returncode == 2
    assert f"unknown architecture: {arch} (armhf or arm64)" in r.stderr


def test_no_architecture_asks_for_one() -> None:
    r = run()
    assert r.returncode == 2
    assert "which architecture? armhf" in r.stderr
    assert "Usage: sudo tools/arch_check.sh ARCH" in r.stdout + r.stderr


def test_help_describes_the_steps_and_the_exit_statuses() -> None:
    r = run("--help")
    assert r.returncode == 0
    for text in ("./dev demo --duration 20", "./dev test TESTS", "3 this machine cannot run"):
        assert text in r.stdout


def test_the_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (`apt-get install shellcheck`)")
    r = subprocess.run(["shellcheck", SCRIPT], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
