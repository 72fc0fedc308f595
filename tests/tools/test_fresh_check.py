"""tools/fresh_check.py: what it reads of this machine, and what it refuses to do.

The check itself takes 15-25 minutes (two Debian roots, the whole suite inside one, a booted
systemd in the other): it is run by hand (`./dev fresh-check`), not here. These tests hold
the parts a wrong guess would break: the mirror, pip's access, the summaries, the cleanup.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import fresh_check as fc

REPO = Path(__file__).parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def etc_apt(tmp_path: Path) -> Path:
    """apt's sources as on a Debian 12 image, plus a third-party and a disabled stanza."""
    etc = tmp_path / "apt"
    write(etc / "sources.list", "# deb http://old.example/debian bookworm main\n")
    write(
        etc / "sources.list.d/debian.sources",
        """\
        Types: deb
        # http://snapshot.debian.org/archive/debian/20250520T000000Z
        URIs: http://deb.debian.org/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb
        URIs: http://deb.debian.org/debian-security
        Suites: bookworm-security
        Components: main

        Types: deb
        URIs: http://disabled.example/debian
        Suites: bookworm
        Components: main
        Enabled: no
        """,
    )
    write(
        etc / "sources.list.d/nodesource.list",
        "deb [arch=amd64 signed-by=/k.gpg] https://deb.nodesource.com/node_20.x nodistro main\n",
    )
    write(etc / "sources.list.d/old.list.disabled", "deb http://never.example bookworm main\n")
    return etc


def test_the_mirror_is_the_one_apt_installs_bookworm_main_from(etc_apt: Path) -> None:
    assert fc.debian_mirror(fc.apt_sources(etc_apt)) == "http://deb.debian.org/debian"


def test_a_one_line_source_with_options_is_read(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    write(
        etc / "sources.list",
        "deb [signed-by=/x.gpg] http://ftp.fr.debian.org/debian/ bookworm main contrib\n",
    )
    assert fc.debian_mirror(fc.apt_sources(etc)) == "http://ftp.fr.debian.org/debian"


def test_no_debian_source_says_to_pass_a_mirror(tmp_path: Path) -> None:
    with pytest.raises(fc.CheckError, match="--mirror URL"):
        fc.debian_mirror(fc.apt_sources(tmp_path))


def test_the_roots_sources_are_the_suites_a_fresh_install_has(etc_apt: Path) -> None:
    assert fc.root_sources(fc.apt_sources(etc_apt)) == (
        "deb http://deb.debian.org/debian bookworm bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n"
    )


def test_apt_settings_for_reaching_the_source_are_carried_over(tmp_path: Path) -> None:
    write(tmp_path / "99snapshot", 'Acquire::Check-Valid-Until "false";\n')
    write(
        tmp_path / "99farm-no-dep11",
        'Acquire::IndexTargets::deb::DEP-11 { DefaultEnabled "false"; };\n',
    )
    write(tmp_path / "70debconf", 'DPkg::Pre-Install-Pkgs {"/usr/sbin/dpkg-preconfigure";};\n')
    assert fc.apt_acquire_settings(tmp_path) == {
        "99snapshot": 'Acquire::Check-Valid-Until "false";\n'
    }


DEBUG = """\
env_var:
  PIP_CERT='/etc/ssl/certs/ca-certificates.crt'
  PIP_FIND_LINKS='{wheels}'
env:
global:
  /etc/xdg/pip/pip.conf, exists: True
    global.constraint: {constraints}
  /etc/pip.conf, exists: False
site:
  /usr/pip.conf, exists: False
user:
  /root/.config/pip/pip.conf, exists: True
    global.extra-index-url: file://{index}/simple https://mirror.example/simple
"""
LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='{wheels}'
global.constraint='{constraints}'
global.extra-index-url='file://{index}/simple https://mirror.example/simple'
global.timeout='60'
"""


def test_pip_access_binds_its_files_the_local_places_they_name_and_its_ca(tmp_path: Path) -> None:
    wheels, index = tmp_path / "wheels", tmp_path / "pypi"
    (index / "simple").mkdir(parents=True)
    wheels.mkdir()
    constraints = write(tmp_path / "constraints.txt", "torch<=2\n")
    names = {"wheels": wheels, "index": index, "constraints": constraints}
    environ = {
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_FIND_LINKS": str(wheels),
        "HOME": "/root",
    }
    access = fc.parse_pip_config(DEBUG.format(**names), LIST.format(**names), environ)
    assert access.files == [Path("/etc/xdg/pip/pip.conf"), Path("/root/.config/pip/pip.conf")]
    # the index's files sit beside its simple/ directory; the https index needs no bind
    assert access.paths == [wheels, constraints, index]
    assert access.ca_bundle == Path("/etc/ssl/certs/ca-certificates.crt")
    assert access.env == {"PIP_CERT": "/fresh-check/pip-ca.crt", "PIP_FIND_LINKS": str(wheels)}
    binds = fc.pip_binds(access)
    assert "--bind-ro=/etc/ssl/certs/ca-certificates.crt:/fresh-check/pip-ca.crt" in binds
    assert f"--bind-ro={index}" in binds and "--setenv=PIP_CERT=/fresh-check/pip-ca.crt" in binds


def test_without_pip_configuration_nothing_is_bound() -> None:
    access = fc.parse_pip_config("", "", {"PATH": "/usr/bin"})
    assert fc.pip_binds(access) == []


def test_the_test_summary_is_pytests_last_line_with_its_failures() -> None:
    output = "..F\nFAILED tests/a.py::test_x - AssertionError\n=== 1 failed, 1385 passed, 6 skipped in 402.11s (0:06:42) ===\n"
    assert fc.pytest_summary(output) == (
        "1 failed, 1385 passed, 6 skipped in 402.11s (0:06:42)\n  FAILED tests/a.py::test_x"
    )
    assert fc.pytest_summary("mypy: error") == "no pytest summary (see the log)"


def test_a_test_run_stopped_before_pytest_names_the_stage_and_its_last_line() -> None:
    output = "\x1b[1m==> ruff\x1b[0m\nE501 Line too long\nFound 1 error.\nAttempted to remove disk file system under x\n"
    assert fc.pytest_summary(output) == "stopped at ruff: Found 1 error."


def test_the_install_summary_fails_on_any_failed_step_and_on_no_step() -> None:
    good = "== install: ok (47.2 s) exit 0\n     detail\n== limits: info (0.0 s) none\n"
    assert fc.install_summary(good) == (
        True,
        "  install: ok (47.2 s) exit 0\n  limits: info (0.0 s) none",
    )
    assert fc.install_summary(good + "== stop: FAIL (9.9 s) still active\n")[0] is False
    assert fc.install_summary("")[0] is False


def test_a_foreign_architecture_is_sent_to_the_qemu_check(tmp_path: Path) -> None:
    target = fc.Target("armhf" if fc.host_arch() != "armhf" else "arm64", "http://x")
    with pytest.raises(fc.CheckError, match=r"runs tools/arch_check\.sh"):
        target.bootstrap(tmp_path / "root", fc.Log(tmp_path, quiet=True))
    assert not (tmp_path / "root").exists()


def test_the_booted_root_has_no_network_and_the_others_only_this_machines_names() -> None:
    target = fc.Target("amd64", "http://x")
    booted = target.nspawn(Path("/r"), boot=True, network=False)
    assert "--private-network" in booted and "--boot" in booted
    assert "--bind-ro=/etc/hosts" in target.nspawn(Path("/r"))
    for argv in (booted, target.nspawn(Path("/r"))):
        assert f"--system-call-filter={fc.NSPAWN_SYSCALLS}" in argv


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root")
def test_a_root_with_a_mount_inside_is_never_deleted(tmp_path: Path) -> None:
    """A bind mount left in a root (a crashed nspawn) would let rmtree reach the host."""
    (tmp_path / "root/host").mkdir(parents=True)
    (tmp_path / "keep").write_text("host data")
    code = f"""
import subprocess, sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tools import fresh_check as fc
subprocess.run(["mount", "--bind", {str(tmp_path)!r}, {str(tmp_path / "root/host")!r}], check=True)
try:
    fc.remove(Path({str(tmp_path / "root")!r}))
except fc.CheckError as exc:
    print("refused:", exc)
"""
    r = subprocess.run(
        ["unshare", "--mount", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "refused:" in r.stdout and "still has mounts inside" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "keep").read_text() == "host data"


def test_the_help_says_what_it_checks() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "tools/fresh_check.py"), "--help"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0
    assert "--arch" in r.stdout and "--keep" in r.stdout and "--used" in r.stdout


@pytest.mark.parametrize("script", ["fresh_check_install.sh", "fresh_check_used.sh"])
def test_shellcheck_finds_nothing_in_the_scripts_run_in_the_root(script: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (`apt-get install shellcheck`)")
    r = subprocess.run(["shellcheck", str(REPO / "tools" / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_dev_fresh_check_hands_a_foreign_architecture_to_arch_check() -> None:
    """`./dev fresh-check --arch X` for another machine runs tools/arch_check.sh X, which
    here only prints what it would do (--dry-run) and changes nothing."""
    foreign = "armhf" if fc.host_arch() != "armhf" else "arm64"
    done = subprocess.run(
        ["./dev", "fresh-check", "--arch", foreign, "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"arch {foreign} on {fc.host_arch()}" in done.stdout + done.stderr


def test_the_offline_root_is_given_every_package_install_sh_installs() -> None:
    # a copy of install.sh's list here missed tzdata when install.sh gained it: the booted
    # root, offline, could not fetch it and the install failed
    text = (REPO / "systemd/install.sh").read_text()
    line = next(x for x in text.splitlines() if x.startswith("packages=("))
    listed = line[len("packages=(") : line.index(")")].split()
    assert "tzdata" in listed and set(listed) <= set(fc.INSTALL_PACKAGES)


def test_an_install_sh_without_its_packages_line_is_a_clear_error(tmp_path: Path) -> None:
    script = write(tmp_path / "install.sh", "apt-get install -y python3\n")
    with pytest.raises(fc.CheckError, match="packages="):
        fc.install_sh_packages(script)
