"""systemd/udev/99-edged.rules: udev itself parses it, and a static check keeps it sane.

systemd 252 has no `udevadm verify` (it came in 254). `udevadm test` parses every rules
file and names the bad lines, but reads them from /etc/udev/rules.d and writes to /run/udev
and /dev, so it runs in a private mount namespace where those are throw-away: a tmpfs over
/run (with /run/udev made in it: only a machine where udevd has run has one), a tmpfs over
/dev, our file alone in /etc/udev/rules.d (a rules file install.sh left there is hidden).
Nothing of the machine's own udev state is read or needed. That needs root (CI is root);
the static check below runs everywhere.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).parents[2] / "systemd" / "udev" / "99-edged.rules"

MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS"}
MATCH_ONLY |= {"DRIVER", "DRIVERS", "ATTRS", "TAGS", "TEST", "RESULT", "CONST"}
MATCH_OR_ASSIGN = {"ENV", "ATTR", "TAG", "SYMLINK", "NAME", "SYSCTL"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS"}
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}
WITH_ATTRIBUTE = {"ATTR", "ATTRS", "ENV", "SYSCTL", "CONST"}
OPTIONAL_ATTRIBUTE = {"TEST", "IMPORT", "RUN"}

GROUPS = {"dialout", "plugdev", "edged", "gpio", "i2c", "spi"}
"""Groups the rules may hand devices to: Debian's, and those install.sh creates."""

TOKEN = re.compile(r'\s*([A-Z_]+)(?:\{([^}]+)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
TEMPLATE = re.compile(r"#(?=[A-Z]+[{=!+:-])")


def rules(include_templates: bool = False) -> list[tuple[int, str]]:
    """(line number, rule text) for each rule; commented-out templates on request."""
    out = []
    for n, raw in enumerate(RULES.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if include_templates and TEMPLATE.match(line):
            line = line[1:]
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def tokens(line: str) -> list[tuple[str, str | None, str, str]]:
    """(key, attribute, operator, value) of each `KEY{attr}OP"value"`; fails on leftovers."""
    out, pos = [], 0
    while pos < len(line):
        m = TOKEN.match(line, pos)
        assert m, f"cannot parse {line[pos:]!r} in {line!r}"
        out.append((m[1], m[2], m[3], m[4]))
        pos = m.end()
        if pos < len(line):
            assert line[pos] == ",", f"expected a comma at {line[pos:]!r}"
            pos += 1
    return out


ALL = rules(include_templates=True)


@pytest.mark.parametrize(("n", "line"), ALL, ids=[f"line{n}" for n, _ in ALL])
def test_each_rule_uses_known_keys_with_their_operators(n: int, line: str) -> None:
    for key, attr, op, _ in tokens(line):
        assert key in MATCH_ONLY | MATCH_OR_ASSIGN | ASSIGN_ONLY, f"line {n}: unknown key {key}"
        if key not in OPTIONAL_ATTRIBUTE:
            needs = key in WITH_ATTRIBUTE
            assert (attr is not None) == needs, f"line {n}: {key}{{attribute}} or {key} alone"
        if key in MATCH_ONLY:
            assert op in MATCH_OPS, f"line {n}: {key} only matches ({op})"
        if key in ASSIGN_ONLY:
            assert op in ASSIGN_OPS, f"line {n}: {key} is only assigned ({op})"


def test_every_goto_has_a_label_after_it() -> None:
    labels: dict[str, int] = {}
    gotos: list[tuple[int, str]] = []
    for n, line in rules():
        for key, _, _, value in tokens(line):
            if key == "LABEL":
                labels[value] = n
            elif key == "GOTO":
                gotos.append((n, value))
    for n, target in gotos:
        assert labels.get(target, 0) > n, f"line {n}: GOTO {target} has no LABEL below"


def assigned(key: str) -> list[tuple[int, str]]:
    return [
        (n, value)
        for n, line in rules(include_templates=True)
        for k, _, op, value in tokens(line)
        if k == key and op in ASSIGN_OPS
    ]


def test_modes_are_octal_and_never_world_accessible() -> None:
    for n, mode in assigned("MODE"):
        assert re.fullmatch(r"0[0-7]{3}", mode), f"line {n}: MODE {mode}"
        assert int(mode, 8) & 0o007 == 0, f"line {n}: MODE {mode} opens the device to everyone"


def test_devices_go_only_to_known_groups() -> None:
    assert {g for _, g in assigned("GROUP")} <= GROUPS


def test_stable_names_are_the_three_edged_names() -> None:
    names = {v for _, v in assigned("SYMLINK")}
    assert names == {"edged-gps", "edged-nfc", "edged-can"}


def test_every_named_serial_device_is_kept_from_modemmanager() -> None:
    for n, line in rules(include_templates=True):
        found = tokens(line)
        if any(k == "SYMLINK" for k, *_ in found):
            assert ("ENV", "ID_MM_DEVICE_IGNORE", "=", "1") in found, f"line {n}"


def udevadm_test(rules_text: str, tmp_path: Path) -> list[str]:
    """udev's own parser, in a private mount namespace; its lines about our file."""
    if shutil.which("udevadm") is None:
        pytest.fail("udevadm is missing: `apt-get install udev` (it comes with systemd)")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("udevadm test needs root and unshare(1) for a private mount namespace")
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "99-edged.rules").write_text(rules_text, encoding="utf-8")
    script = (
        "mount -t tmpfs none /run && mkdir /run/udev && mount -t tmpfs none /dev && "
        f"mount --bind {rules_dir} /etc/udev/rules.d && "
        "udevadm test --action=add /sys/class/tty/console"
    )
    r = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if r.returncode != 0 and "unshare failed" in r.stderr:
        pytest.skip(f"no private mount namespace here: {r.stderr.strip()}")
    output = r.stdout + r.stderr
    assert "Reading rules file: /etc/udev/rules.d/99-edged.rules" in output, output[-2000:]
    return [line for line in output.splitlines() if "99-edged.rules:" in line]


def complaints(lines: list[str]) -> list[str]:
    # on a machine without install.sh's groups, udev says so; that is not a fault of the file
    return [
        line
        for line in lines
        if not re.search(rf"Unknown group '({'|'.join(GROUPS)})', ignoring", line)
    ]


def test_udev_parses_the_rules_without_complaint(tmp_path: Path) -> None:
    assert complaints(udevadm_test(RULES.read_text(encoding="utf-8"), tmp_path)) == []


def test_udev_parses_the_templates_once_uncommented(tmp_path: Path) -> None:
    text = TEMPLATE.sub("", RULES.read_text(encoding="utf-8"))
    assert complaints(udevadm_test(text, tmp_path)) == []


def test_udevadm_test_as_run_here_catches_a_bad_rule(tmp_path: Path) -> None:
    """The gate above is real: udev names a misspelt key and a GOTO without its label."""
    found = udevadm_test('ATTRS{idVendor}=="1546", SYMLNK+="x"\nGOTO="nowhere"\n', tmp_path)
    assert any("Invalid key 'SYMLNK'" in line for line in found), found
    assert any("no matching label" in line for line in found), found
