"""What the shared fixtures tell a contributor is true of this checkout."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from tests.conftest import FLUSH_TO_ZERO, not_installed
from tests.helpers import ftz
from tests.helpers.nodes import ROOT


def test_a_missing_program_names_the_repos_test_command_which_installs_it() -> None:
    """It once said `make test`: there is no Makefile."""
    command = re.findall(r"`([^`]+)`", not_installed("mosquitto"))
    assert command == ["./dev test"]
    script = ROOT / shlex.split(command[0])[0]
    assert script.is_file()
    branch = re.search(r"^\s*test\)\n(.*?);;", script.read_text(), flags=re.M | re.S)
    assert branch is not None, "./dev has no test command"
    installs = re.search(r"apt_install ([^\n]+)", branch.group(1))
    assert installs is not None
    assert "mosquitto" in installs.group(1).split()


def is_subnormal(x: float) -> bool:
    return 0 < abs(x) < sys.float_info.min


def test_float_strategies_draw_subnormals_exactly_when_this_process_can_hold_them() -> None:
    """On x86-64 and arm64 the guard is off and subnormals are drawn; on armhf it is on."""
    tiny = st.floats(0, 1e-300)
    assert ftz.flush_to_zero() == FLUSH_TO_ZERO
    if ftz.flush_to_zero():
        with pytest.raises(NoSuchExample):
            find(tiny, is_subnormal)
    else:
        assert is_subnormal(find(tiny, is_subnormal))


FAST_MATH_CHILD = """
import ctypes, sys
from hypothesis import find, strategies as st
from hypothesis.errors import NoSuchExample
from tests.helpers import ftz
before = ftz.flush_to_zero()
ctypes.CDLL(sys.argv[1])
if before or not ftz.flush_to_zero():
    print("no-ftz")
    raise SystemExit
try:
    st.floats(0, 1).example()
    print("unguarded-drew")
except FloatingPointError as exc:
    print("unguarded-refused:", "subnormal" in str(exc))
ftz.exclude_subnormals()
st.floats(0, 1).example()
try:
    find(st.floats(0, 1e-300), lambda x: 0 < x < sys.float_info.min)
    print("guarded-drew-subnormal")
except NoSuchExample:
    print("guarded-ok")
"""


def test_a_library_linked_with_ofast_turns_on_flush_to_zero_and_the_guard_copes(
    tmp_path: Path,
) -> None:
    """yarl's armv7l wheel, reproduced on any machine with GCC < 13: a -Ofast shared
    library sets flush-to-zero when loaded; Hypothesis then refuses float ranges holding
    subnormals, and with the guard the same strategies draw without them."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a -Ofast library")
    (tmp_path / "nothing.c").write_text("int edged_nothing(void) { return 0; }\n")
    lib = tmp_path / "libfastmath.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-Ofast", "-o", lib, tmp_path / "nothing.c"], check=True
    )
    run = subprocess.run(
        [sys.executable, "-c", FAST_MATH_CHILD, str(lib)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    if run.stdout.strip() == "no-ftz":
        pytest.skip(f"{cc} no longer links crtfastmath.o into a -Ofast shared library")
    assert run.stdout.split("\n")[:2] == ["unguarded-refused: True", "guarded-ok"], run.stdout


def test_the_emulated_profile_drops_only_the_deadline_which_measures_the_emulator() -> None:
    emulated, default = settings.get_profile("emulated"), settings.get_profile("default")
    assert emulated.deadline is None
    assert default.deadline is not None  # a normal run keeps Hypothesis' deadline
    assert emulated.max_examples == default.max_examples
