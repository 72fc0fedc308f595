"""systemd/edged.service: systemd itself checks it, and its notify and hardening settings stay.

`systemd-analyze verify` and `security --offline` run without systemd as PID 1 (as in CI).
The unit is verified unchanged, inside a throw-away root that holds a copy of the host's
system units and a stub at the ExecStart path (verify refuses a missing binary).
"""

import json
import re
import shlex
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from edged.cli.main import EXIT_CONFIG, _parser
from edged.node import SHUTDOWN_BUDGET_S

UNIT = Path(__file__).parents[2] / "systemd" / "edged.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value assigned, in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        sections[section][key.strip()].append(value.strip())
    return sections


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", value)
    assert m, f"not a simple time span: {value!r}"
    return float(m[1]) * {"ms": 0.001, "s": 1, "min": 60, None: 1}[m[2]]


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: `apt-get install systemd` (./dev test does)")
    return path


def make_root(root: Path, unit_text: str) -> Path:
    """A root for `systemd-analyze --root`: the host's units, ours, a stub for each command."""
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/edged.service").write_text(unit_text, encoding="utf-8")
    for key, values in parse_unit(unit_text)["Service"].items():
        if not key.startswith("Exec"):
            continue
        for value in values:  # a stub at each command's path (the launcher's /usr/bin/python3)
            exe = root / shlex.split(value.lstrip("-@+!:"))[0].lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("root"), UNIT.read_text(encoding="utf-8"))


def analyze(tool: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "--no-pager", f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- systemd's own checks ------------------------------------------------------------


def test_systemd_analyze_verify_passes_without_a_single_warning(
    systemd_analyze: str, root: Path
) -> None:
    # verify exits 0 on unknown keys and bad values (it only warns): any output is a failure
    r = analyze(systemd_analyze, root, "verify", "--man=no", "edged.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def test_verify_as_run_here_would_catch_a_misspelt_key(
    systemd_analyze: str, tmp_path: Path
) -> None:
    """The gate above is real: a typo in a hardening key shows up in verify's output."""
    text = UNIT.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHom=yes")
    r = analyze(systemd_analyze, make_root(tmp_path, text), "verify", "--man=no", "edged.service")
    assert "Unknown key 'ProtectHom'" in r.stdout + r.stderr


def test_security_exposure_stays_low(systemd_analyze: str, root: Path) -> None:
    # --threshold is on the 0..100 scale of the 0.0..10.0 score: fail above 3.0
    r = analyze(
        systemd_analyze, root, "security", "--offline=yes", "--threshold=30", "edged.service"
    )
    m = re.search(r"Overall exposure level for edged.service: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    print(f"systemd-analyze security: exposure {m[1]}")
    assert r.returncode == 0, f"exposure {m[1]} is above 3.0"


def security_items(tool: str, root: Path) -> dict[str, bool]:
    r = analyze(tool, root, "security", "--offline=yes", "--json=short", "edged.service")
    assert r.returncode == 0, r.stderr
    return {item["json_field"]: item["set"] for item in json.loads(r.stdout)}


def test_the_system_call_filter_keeps_adjtimex_for_the_clock_check(
    systemd_analyze: str, root: Path
) -> None:
    """@privileged contains @clock: adjtimex must be allowed again after ~@privileged, or
    edged/clock.py could never see an NTP-synced clock. Asked of systemd's own reading."""
    items = security_items(systemd_analyze, root)
    assert items["SystemCallFilter_clock"] is False, "adjtimex is filtered out"
    # the rest of @privileged stays out (adjtimex makes systemd call @privileged "included")
    for group in ["module", "reboot", "raw_io", "mount", "swap"]:
        assert items[f"SystemCallFilter_{group}"] is True, group
    assert items["CapabilityBoundingSet_CAP_SYS_TIME"] is True, "the clock stays unsettable"


def test_systemd_reads_the_sandbox_as_intended(systemd_analyze: str, root: Path) -> None:
    items = security_items(systemd_analyze, root)
    wanted = [
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictRealtime",
        "LockPersonality",
        "SystemCallArchitectures",
        "UMask",
        "RestrictAddressFamilies_AF_PACKET",
        "CapabilityBoundingSet_CAP_SYS_ADMIN",
        "CapabilityBoundingSet_CAP_NET_ADMIN",
    ]
    assert [w for w in wanted if not items.get(w)] == []


# -- the settings a later edit must not drop -----------------------------------------


def test_it_is_a_notify_service_with_a_watchdog(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert 10 <= seconds(service["WatchdogSec"][-1]) <= 60


def test_it_restarts_forever(unit: dict[str, dict[str, list[str]]]) -> None:
    assert unit["Service"]["Restart"] == ["always"]
    assert 1 <= seconds(unit["Service"]["RestartSec"][-1]) <= 30
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"], "a start limit would give up for good"


def test_a_config_error_stops_the_restart_loop(unit: dict[str, dict[str, list[str]]]) -> None:
    """Restarting cannot fix a config: `edged run` exits EXIT_CONFIG, and systemd waits."""
    assert unit["Service"]["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]


def test_the_stop_timeout_leaves_room_for_the_nodes_shutdown(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    stop = seconds(unit["Service"]["TimeoutStopSec"][-1])
    assert SHUTDOWN_BUDGET_S + 2 <= stop <= 15


def test_exec_start_is_a_run_command_the_cli_accepts(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    argv = shlex.split(unit["Service"]["ExecStart"][-1])
    # the launcher (docs/updates.md) picks the release and passes the rest to `edged`; it
    # runs the release with its own -OO (systemd/README.md, "Optimised bytecode")
    assert argv[:6] == [
        "/usr/bin/python3", "-I", "-OO", "/opt/edged/launcher.py",
        "--releases", "/opt/edged/releases",
    ]  # fmt: skip
    args = _parser().parse_args(argv[6:])
    assert args.command == "run"
    assert args.config == Path("/etc/edged/edged.toml")
    stop_post = shlex.split(unit["Service"]["ExecStopPost"][-1])
    assert stop_post == [*argv[:2], *argv[3:6], "--stopped"]


def test_it_runs_as_edged_with_the_device_groups(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service["User"] == ["edged"]
    assert service["Group"] == ["edged"]
    groups = " ".join(service["SupplementaryGroups"]).split()
    assert {"dialout", "gpio", "i2c", "spi"} <= set(groups)


def test_its_data_and_config_directories_are_managed_by_systemd(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    service = unit["Service"]
    assert service["StateDirectory"] == ["edged"]
    assert service["ConfigurationDirectory"] == ["edged"]
    # config.set replaces /etc/edged/edged.toml: the directory must stay writable
    assert "/etc/edged" in service["ReadWritePaths"]


HARDENING = {
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0077",
    "DevicePolicy": "closed",
}


@pytest.mark.parametrize(("key", "value"), HARDENING.items())
def test_hardening_setting_is_present(
    unit: dict[str, dict[str, list[str]]], key: str, value: str
) -> None:
    assert unit["Service"].get(key, [None])[-1] == value


def test_the_system_call_filter_starts_from_the_service_set(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"


def test_only_the_socket_families_edged_uses_are_allowed(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    families = set(" ".join(unit["Service"]["RestrictAddressFamilies"]).split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_CAN", "AF_NETLINK"}


def test_the_device_allow_list_covers_edged_hardware_read_write(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    allowed = dict(entry.split() for entry in unit["Service"]["DeviceAllow"])
    for group in [
        "char-ttyUSB",  # USB GPS, PN532 on a USB-UART adapter, slcan
        "char-ttyACM",  # u-blox, CANable in slcan firmware
        "char-ttyAMA",  # the Pi's PL011 UART
        "char-ttyS",  # the Pi's mini UART
        "char-gpiochip",
        "char-i2c",
        "char-spi",  # spidev registers as "spi" in /proc/devices
        "char-usb_device",  # ACR122U through libusb
    ]:
        assert allowed.get(group) == "rw", group


def test_device_groups_from_modules_are_loaded_before_the_start(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    """char-* groups resolve against /proc/devices at start: their modules must be in."""
    wants = " ".join(unit["Unit"]["Wants"]).split()
    after = " ".join(unit["Unit"]["After"]).split()
    for module in ["usbserial", "cdc_acm", "i2c_dev", "spidev"]:
        assert f"modprobe@{module}.service" in wants
        assert f"modprobe@{module}.service" in after


def test_memory_is_capped(unit: dict[str, dict[str, list[str]]]) -> None:
    assert unit["Service"]["MemoryMax"] == ["150M"]
