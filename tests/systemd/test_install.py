"""systemd/install.sh and uninstall.sh, run for real into a throw-away system root.

The root holds the passwd, group and shadow files of a fresh OS image, written here (not
copied from this machine, whose users and groups vary: an earlier install's edged user, a
Pi's `gpio` group with its members): plain Debian 12, or Raspberry Pi OS with its device
groups. The scripts create the edged user and groups there (useradd --prefix) and chown by
the ids found there. The venv is built for real; what goes into it is a stub wheel installed with
pip offline, so the test needs no network (the real `pip install` of the checkout is the one
step not run here). Both scripts create users and chown, so the tests need root (CI is).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
INSTALL = REPO / "systemd" / "install.sh"
UNINSTALL = REPO / "systemd" / "uninstall.sh"
PYTHON = Path("/usr/bin/python3")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh creates users and chowns files: run as root (CI does)"
)


def stub_wheel(directory: Path) -> Path:
    """A wheel named edged whose `edged` command only echoes: pip installs it offline."""
    files = {
        "edged_stub/__init__.py": (
            "import sys\n\ndef main():\n    print('stub edged', *sys.argv[1:])\n    return 0\n"
        ),
        "edged-0.0.1.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: edged\nVersion: 0.0.1\nProvides-Extra: nfc\n"
        ),
        "edged-0.0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        "edged-0.0.1.dist-info/entry_points.txt": "[console_scripts]\nedged = edged_stub:main\n",
    }
    record = []
    path = directory / "edged-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{name},sha256={digest.rstrip(b'=').decode()},{len(text)}")
        record.append("edged-0.0.1.dist-info/RECORD,,")
        whl.writestr("edged-0.0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


DEBIAN_USERS = [
    ("root", 0, 0, "/root", "/bin/bash"),
    ("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin"),
]
DEBIAN_GROUPS = [("root", 0, ""), ("dialout", 20, ""), ("plugdev", 46, ""), ("nogroup", 65534, "")]
PI_OS_USERS = [("pi", 1000, 1000, "/home/pi", "/bin/bash")]
PI_OS_GROUPS = [("pi", 1000, ""), ("gpio", 997, "pi"), ("i2c", 998, "pi"), ("spi", 999, "pi")]
"""Raspberry Pi OS gives its first user the device groups edged joins."""


def new_image(root: Path, *, pi_os: bool = False) -> Path:
    """A fresh image's user database (and this machine's login.defs, for useradd's ranges)."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    users = DEBIAN_USERS + (PI_OS_USERS if pi_os else [])
    groups = DEBIAN_GROUPS + (PI_OS_GROUPS if pi_os else [])
    files = {
        "passwd": [f"{n}:x:{u}:{g}:{n}:{home}:{sh}" for n, u, g, home, sh in users],
        "shadow": [f"{n}:*:19000:0:99999:7:::" for n, *_ in users],
        "group": [f"{n}:x:{g}:{m}" for n, g, m in groups],
        "gshadow": [f"{n}:*::{m}" for n, _, m in groups],
    }
    for name, lines in files.items():
        (etc / name).write_text("\n".join(lines) + "\n")
    (etc / "shadow").chmod(0o640)
    (etc / "gshadow").chmod(0o640)
    if Path("/etc/login.defs").exists():
        shutil.copy2("/etc/login.defs", etc / "login.defs")
    return root


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_NO_DEPS": "1"}
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, timeout=300, env=env
    )


def install(root: Path, wheel: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = run(INSTALL, "--root", str(root), "--wheel", str(wheel), "--python", str(PYTHON), *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def copy_root(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)  # keeps owners
    return dst


def ids(root: Path, file: str, name: str) -> int:
    for line in (root / "etc" / file).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"{name} not in {file}")


def members(root: Path, group: str) -> set[str]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return set(filter(None, fields[3].split(",")))
    raise AssertionError(f"no group {group}")


def owner_mode(path: Path) -> tuple[int, int, str]:
    st = path.lstat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path outside the venv: owner, group, mode and content hash."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[:3] == ("opt", "edged", "venv"):
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(rel)] = (st.st_uid, st.st_gid, st.st_mode, digest)
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """One install, shared by the tests that only look at it."""
    if os.geteuid() != 0:
        pytest.skip("install.sh creates users and chowns files: run as root (CI does)")
    if subprocess.run([str(PYTHON), "-c", "import ensurepip, venv"], check=False).returncode:
        pytest.fail(f"{PYTHON} cannot make a venv: `apt-get install python3-venv`")
    root = new_image(tmp_path_factory.mktemp("image") / "root")
    install(root, wheel)
    return root


@pytest.fixture
def fresh(installed: Path, tmp_path: Path) -> Path:
    """A private copy of the installed root, for tests that change it."""
    return copy_root(installed, tmp_path / "root")


# -- install --------------------------------------------------------------------------------


@needs_root
def test_install_creates_the_edged_user_in_the_device_groups(installed: Path) -> None:
    passwd = next(
        line
        for line in (installed / "etc/passwd").read_text().splitlines()
        if line.startswith("edged:")
    )
    assert passwd.endswith(":/var/lib/edged:/usr/sbin/nologin")
    for group in ["dialout", "gpio", "i2c", "spi", "plugdev"]:
        assert "edged" in members(installed, group), group


@needs_root
def test_install_lays_out_config_state_and_secrets_with_their_modes(installed: Path) -> None:
    uid, gid = ids(installed, "passwd", "edged"), ids(installed, "group", "edged")
    assert owner_mode(installed / "etc/edged") == (0, gid, "0o770")
    assert owner_mode(installed / "etc/edged/edged.toml") == (0, gid, "0o640")
    assert owner_mode(installed / "etc/edged/secrets") == (uid, gid, "0o700")
    assert owner_mode(installed / "var/lib/edged") == (uid, gid, "0o700")


@needs_root
def test_install_copies_the_example_config_when_there_is_none(installed: Path) -> None:
    example = (REPO / "config/shuttle.toml").read_bytes()
    assert (installed / "etc/edged/edged.toml").read_bytes() == example


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """The real `edged check-config` (the venv in the image holds a stub)."""
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@needs_root
def test_the_installed_config_passes_check_config(installed: Path) -> None:
    """The copied example names a route and a CAN log relative to itself: they come along,
    or the service could never start (it looped on `no such file` every 5 s)."""
    r = check_config(installed / "etc/edged/edged.toml")
    assert r.returncode == 0, r.stderr
    gid = ids(installed, "group", "edged")
    for name in ["routes/creuse-shuttle.json", "can/shuttle-day.log"]:
        assert (installed / "etc/edged" / name).read_bytes() == (
            REPO / "config" / name
        ).read_bytes()
        assert owner_mode(installed / "etc/edged" / name) == (0, gid, "0o640")
        assert owner_mode((installed / "etc/edged" / name).parent) == (0, gid, "0o750")


@needs_root
@pytest.mark.parametrize("example", ["truck.toml", "venue.toml"])
def test_each_example_installs_as_a_config_that_passes_check_config(
    fresh: Path, wheel: Path, example: str
) -> None:
    shutil.rmtree(fresh / "etc/edged")
    install(fresh, wheel, "--config", str(REPO / "config" / example))
    assert (fresh / "etc/edged/edged.toml").read_bytes() == (REPO / "config" / example).read_bytes()
    r = check_config(fresh / "etc/edged/edged.toml")
    assert r.returncode == 0, r.stderr


@needs_root
def test_a_named_file_already_there_is_kept(fresh: Path, wheel: Path) -> None:
    (fresh / "etc/edged/edged.toml").unlink()
    route = fresh / "etc/edged/routes/creuse-shuttle.json"
    route.write_text('{"edited": true}')
    install(fresh, wheel)
    assert route.read_text() == '{"edited": true}'


@needs_root
@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("systemd/edged.service", "etc/systemd/system/edged.service"),
        ("systemd/udev/99-edged.rules", "etc/udev/rules.d/99-edged.rules"),
        ("systemd/modprobe.d/edged-blacklist-nfc.conf", "etc/modprobe.d/edged-blacklist-nfc.conf"),
        ("systemd/sysctl.d/60-edged.conf", "etc/sysctl.d/60-edged.conf"),
        ("systemd/README.md", "opt/edged/doc/systemd.md"),
    ],
)
def test_install_puts_each_system_file_in_place(installed: Path, source: str, target: str) -> None:
    assert (installed / target).read_bytes() == (REPO / source).read_bytes()
    assert owner_mode(installed / target) == (0, 0, "0o644")


def documentation_paths() -> list[str]:
    """Every `Documentation=file:/opt/edged/doc/...` a unit of the project names: the shipped
    unit and the units edged renders (the hotspot's)."""
    found: set[str] = set()
    sources = [*(REPO / "systemd").rglob("*"), *(REPO / "edged").rglob("*.py")]
    for path in sources:
        if path.is_file():
            text = path.read_text(errors="replace")
            found.update(re.findall(r"Documentation=file:/(opt/edged/doc/[\w./-]+)", text))
    return sorted(found)


def test_the_units_name_their_documentation() -> None:
    # the scan below finds the two known ones: it would pass vacuously if it found none
    assert {"opt/edged/doc/systemd.md", "opt/edged/doc/wifi.md"} <= set(documentation_paths())


@needs_root
@pytest.mark.parametrize("target", documentation_paths())
def test_install_puts_each_document_a_unit_names_in_place(installed: Path, target: str) -> None:
    assert (installed / target).is_file(), f"a unit names {target}; install.sh must install it"
    assert owner_mode(installed / target) == (0, 0, "0o644")


@needs_root
@pytest.mark.parametrize("doc", sorted(p.name for p in (REPO / "docs").glob("*.md")))
def test_install_puts_each_doc_in_place(installed: Path, doc: str) -> None:
    target = installed / "opt/edged/doc" / doc
    assert target.read_bytes() == (REPO / "docs" / doc).read_bytes()


@needs_root
@pytest.mark.parametrize(
    ("kiosk", "font"),
    [("[services.kiosk]\nenabled = true\n", True), ("[services.kiosk]\nenabled = false\n", False),
     ("[services]\n", False)],
)  # fmt: skip
def test_install_adds_the_emoji_font_when_the_config_enables_the_kiosk(
    fresh: Path, wheel: Path, kiosk: str, font: bool
) -> None:
    (fresh / "etc/edged/edged.toml").write_text(kiosk)  # the config kept decides
    r = install(fresh, wheel)
    (needs,) = [line for line in r.stderr.splitlines() if "the node needs" in line]
    assert "libnfc6" in needs and "tzdata" in needs  # local times need the zone database
    assert ("fonts-noto-color-emoji" in needs) is font, needs


POLICY = "etc/chromium/policies/managed/edged-kiosk.json"


@needs_root
def test_install_locks_the_screens_browser_to_the_configured_kiosk_and_uninstall_unlocks_it(
    fresh: Path, wheel: Path
) -> None:
    (fresh / "etc/edged/edged.toml").write_text("[services.kiosk]\nenabled = true\nport = 8123\n")
    install(fresh, wheel)
    policy = json.loads((fresh / POLICY).read_text())
    assert policy["URLAllowlist"] == ["http://127.0.0.1:8123"]
    assert policy["URLBlocklist"][0] == "*"
    assert owner_mode(fresh / POLICY) == (0, 0, "0o644")  # Chromium reads it as any user
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    assert not (fresh / POLICY).exists()


@needs_root
def test_uninstall_leaves_no_empty_policy_directories_behind(installed: Path, fresh: Path) -> None:
    """The image had no /etc/chromium: install.sh made it for the policy alone."""
    assert (installed / POLICY).exists()
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    assert not (fresh / "etc/chromium").exists()


@needs_root
def test_uninstall_keeps_chromiums_own_files(fresh: Path) -> None:
    (fresh / "etc/chromium/master_preferences").write_text("{}")
    (fresh / "etc/chromium/policies/managed/theirs.json").write_text("{}")
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    assert (fresh / "etc/chromium/master_preferences").read_text() == "{}"
    assert (fresh / "etc/chromium/policies/managed/theirs.json").read_text() == "{}"


@needs_root
def test_install_leaves_the_browser_unlocked_once_the_config_drops_the_kiosk(
    installed: Path, fresh: Path, wheel: Path
) -> None:
    assert (installed / POLICY).exists()  # the example config has a kiosk
    (fresh / "etc/edged/edged.toml").write_text("[services.kiosk]\nenabled = false\n")
    install(fresh, wheel)
    assert not (fresh / POLICY).exists()


@needs_root
def test_install_keeps_the_browser_locked_while_the_config_does_not_parse(
    installed: Path, fresh: Path, wheel: Path
) -> None:
    """A typo is not a kiosk dropped: the screen's browser stays on the page's address."""
    before = (installed / POLICY).read_bytes()
    (fresh / "etc/edged/edged.toml").write_text("[services.kiosk]\nenabled = true\nport = 80 80\n")
    run(INSTALL, "--root", str(fresh), "--wheel", str(wheel), "--python", str(PYTHON))
    assert (fresh / POLICY).read_bytes() == before


@needs_root
def test_install_stops_before_any_change_at_a_kiosk_port_the_browser_cannot_allow(
    fresh: Path, wheel: Path
) -> None:
    (fresh / "etc/edged/edged.toml").write_text("[services.kiosk]\nenabled = true\nport = 0\n")
    before = snapshot(fresh)
    r = run(INSTALL, "--root", str(fresh), "--wheel", str(wheel), "--python", str(PYTHON))
    assert r.returncode != 0
    assert "port = 0: the screen's browser needs a fixed port" in r.stderr
    assert snapshot(fresh) == before, "stopped before it changed anything"


@needs_root
def test_install_builds_a_venv_whose_edged_command_runs(installed: Path) -> None:
    edged = installed / "opt/edged/venv/bin/edged"
    r = subprocess.run([str(edged), "check-config", "x"], capture_output=True, text=True)
    assert r.stdout.strip() == "stub edged check-config x"


def venv_of(root: Path) -> Path:
    return (root / "opt/edged/venv").resolve()


@needs_root
def test_install_compiles_the_bytecode_python_OO_reads_and_the_venv_loads_it(
    installed: Path,
) -> None:
    """The unit runs edged with -OO, which reads .opt-2.pyc files and cannot write them."""
    venv = venv_of(installed)
    (module,) = venv.glob("lib/python3*/site-packages/edged_stub/__init__.py")
    cache = module.parent / "__pycache__"
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == [
        "cpython-311.opt-2.pyc", "cpython-311.pyc"
    ]  # fmt: skip
    r = subprocess.run(
        [str(venv / "bin/python"), "-OO", "-v", "-c", "import edged_stub"],
        capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"},  # as the unit
    )  # fmt: skip
    assert f"# code object from '{cache}/__init__.cpython-311.opt-2.pyc'" in r.stderr


@needs_root
def test_install_does_not_compile_pip_which_the_daemon_never_imports(installed: Path) -> None:
    (pip,) = venv_of(installed).glob("lib/python3*/site-packages/pip")
    assert list(pip.rglob("*.pyc")), "pip's own .pyc are pip's business"
    assert list(pip.rglob("*.opt-2.pyc")) == []


@needs_root
def test_install_compiles_the_standard_library_again_after_each_apt_run(installed: Path) -> None:
    """dpkg deletes the stdlib's .opt-2.pyc with an old Python and writes only the .pyc of
    the new one: an apt hook compiles them again (the stdlib is this machine's under --root,
    so it is not compiled here, and the hook is not run)."""
    hook = installed / "etc/apt/apt.conf.d/60edged-bytecode"
    assert owner_mode(hook) == (0, 0, "0o644")
    stdlib = subprocess.run(
        [str(venv_of(installed) / "bin/python"), "-c",
         "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if shutil.which("apt-config") is None:
        pytest.skip("apt-config is not installed: cannot check that apt reads the hook")
    dump = subprocess.run(
        ["apt-config", "-c", str(hook), "dump", "DPkg::Post-Invoke"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (line,) = [x for x in dump.splitlines() if "edged" in x]
    command = line.split('"', 1)[1].rsplit('"', 1)[0]
    assert "/opt/edged/venv/bin/python -m compileall -q -o 2" in command
    assert command.split(" >/dev/null")[0].endswith(f" {stdlib}")
    r = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_root
def test_install_into_a_root_touches_no_running_service(installed: Path, wheel: Path) -> None:
    r = install(copy_root(installed, installed.parent / "again"), wheel)
    assert "no service touched" in r.stderr


@needs_root
def test_running_install_twice_changes_nothing(fresh: Path, wheel: Path) -> None:
    (fresh / "var/lib/edged/outbox.sqlite").write_bytes(b"messages not sent yet")
    before = snapshot(fresh)
    install(fresh, wheel)
    assert snapshot(fresh) == before


@needs_root
def test_install_never_overwrites_an_edited_config(fresh: Path, wheel: Path) -> None:
    config = fresh / "etc/edged/edged.toml"
    config.write_text("# this node's own config\n")
    os.chown(config, ids(fresh, "passwd", "edged"), ids(fresh, "group", "edged"))
    config.chmod(0o600)  # as config.set leaves it
    before = owner_mode(config)
    install(fresh, wheel)
    assert config.read_text() == "# this node's own config\n"
    assert owner_mode(config) == before


@needs_root
def test_install_refuses_a_root_that_is_not_a_system_image(tmp_path: Path, wheel: Path) -> None:
    r = run(INSTALL, "--root", str(tmp_path), "--wheel", str(wheel))
    assert r.returncode != 0
    assert "needs etc/passwd and etc/group" in r.stderr
    assert list(tmp_path.iterdir()) == []


# -- uninstall ------------------------------------------------------------------------------

REMOVED = [
    "etc/systemd/system/edged.service",
    "etc/udev/rules.d/99-edged.rules",
    "etc/modprobe.d/edged-blacklist-nfc.conf",
    "etc/sysctl.d/60-edged.conf",
    "etc/apt/apt.conf.d/60edged-bytecode",
    "etc/chromium/policies/managed/edged-kiosk.json",
    "opt/edged",
]


@needs_root
def test_uninstall_removes_the_service_and_keeps_config_data_and_user(fresh: Path) -> None:
    (fresh / "var/lib/edged/outbox.sqlite").write_bytes(b"messages not sent yet")
    (fresh / "etc/edged/secrets/mqtt-password").write_text("s3cret")
    r = run(UNINSTALL, "--root", str(fresh))
    assert r.returncode == 0, r.stderr
    assert [p for p in REMOVED if (fresh / p).exists()] == []
    assert (fresh / "var/lib/edged/outbox.sqlite").read_bytes() == b"messages not sent yet"
    assert (fresh / "etc/edged/secrets/mqtt-password").read_text() == "s3cret"
    assert (fresh / "etc/edged/edged.toml").exists()
    assert ids(fresh, "passwd", "edged")
    assert "kept: /etc/edged" in r.stderr
    assert "--purge" in r.stderr


@needs_root
def test_uninstall_removes_drop_ins_made_with_systemctl_edit(fresh: Path) -> None:
    drop_in = fresh / "etc/systemd/system/edged.service.d/override.conf"
    drop_in.parent.mkdir()
    drop_in.write_text("[Service]\nWatchdogSec=60s\n")
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    assert not drop_in.parent.exists()


@needs_root
def test_uninstall_purge_also_removes_config_data_and_user(fresh: Path) -> None:
    r = run(UNINSTALL, "--root", str(fresh), "--purge")
    assert r.returncode == 0, r.stderr
    assert not (fresh / "etc/edged").exists()
    assert not (fresh / "var/lib/edged").exists()
    assert "edged:" not in (fresh / "etc/passwd").read_text()
    assert not any(
        line.startswith("edged:") for line in (fresh / "etc/group").read_text().splitlines()
    )
    assert "edged" not in members(fresh, "dialout")
    assert members(fresh, "gpio") == set(), "the device groups stay, empty"


@needs_root
def test_on_raspberry_pi_os_edged_joins_the_device_groups_beside_their_members(
    tmp_path: Path, wheel: Path
) -> None:
    root = new_image(tmp_path / "root", pi_os=True)
    install(root, wheel)
    for group in ["gpio", "i2c", "spi"]:
        assert members(root, group) == {"pi", "edged"}, group
    assert (
        sum(line.startswith("gpio:") for line in (root / "etc/group").read_text().splitlines()) == 1
    )
    assert run(UNINSTALL, "--root", str(root), "--purge").returncode == 0
    for group in ["gpio", "i2c", "spi"]:
        assert members(root, group) == {"pi"}, "the Pi's own user stays in its groups"


@needs_root
def test_uninstall_twice_is_harmless(fresh: Path) -> None:
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    r = run(UNINSTALL, "--root", str(fresh), "--purge")
    assert r.returncode == 0, r.stderr
    r = run(UNINSTALL, "--root", str(fresh), "--purge")
    assert r.returncode == 0, r.stderr


@needs_root
def test_install_after_uninstall_keeps_the_old_config_and_outbox(fresh: Path, wheel: Path) -> None:
    config = fresh / "etc/edged/edged.toml"
    config.write_text("# kept across a reinstall\n")
    (fresh / "var/lib/edged/outbox.sqlite").write_bytes(b"queued")
    assert run(UNINSTALL, "--root", str(fresh)).returncode == 0
    install(fresh, wheel)
    assert config.read_text() == "# kept across a reinstall\n"
    assert (fresh / "var/lib/edged/outbox.sqlite").read_bytes() == b"queued"


# -- both scripts ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=["install", "uninstall"])
def test_help_says_what_it_does_and_exits_zero(script: Path) -> None:
    r = run(script, "--help")
    assert r.returncode == 0
    assert "--root DIR" in r.stdout
    assert "--no-systemctl" in r.stdout


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=["install", "uninstall"])
def test_an_unknown_option_is_refused(script: Path) -> None:
    r = run(script, "--frobnicate")
    assert r.returncode != 0
    assert "unknown option: --frobnicate" in r.stderr


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=["install", "uninstall"])
def test_the_scripts_are_executable_and_strict(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL], ids=["install", "uninstall"])
def test_shellcheck_finds_nothing(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (`apt-get install shellcheck`)")
    r = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_the_readme_runs_a_node_with_the_installed_commands_as_the_service_user() -> None:
    """README "Running a node" is for an installed node: the venv install.sh makes (the
    unit's ExecStart), run as `edged`; it showed the checkout's .venv/bin/edged."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    part = readme[readme.index("## Running a node") :]
    part = part[: part.index("\n## ", 1)]
    unit = (REPO / "systemd/edged.service").read_text(encoding="utf-8")
    # the unit starts the launcher, which runs releases/current: the venv /opt/edged/venv
    # links to (install.sh; docs/updates.md)
    assert re.search(r"^ExecStart=/usr/bin/python3 -I -OO /opt/edged/launcher\.py ", unit, re.M)
    assert 'ln -sfn releases/current/venv "$R$VENV"' in INSTALL.read_text()
    program = "/opt/edged/venv/bin/edged"
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", part, re.DOTALL)
        for line in block.splitlines()
        if re.search(r"\bbin/edged\b", line)
    ]
    assert lines
    for line in lines:
        assert line.startswith(f"sudo -u edged {program} "), line
