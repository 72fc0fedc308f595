"""The C library is reached without a search: `ctypes.util.find_library("c")` ran
`/sbin/ldconfig -p` in a child process at every start (the journal) and once a minute on a
node that does not trust the system clock (`kernel_clock_synced`)."""

import subprocess
import sys

from edged.clock import kernel_clock_synced
from tests.helpers.nodes import ROOT


def test_asking_whether_the_kernel_clock_is_synced_starts_no_process(monkeypatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    assert kernel_clock_synced() in (True, False, None)  # None: a kernel that will not say


def test_the_journal_and_the_clock_load_without_searching_for_the_c_library() -> None:
    code = "import sys, edged.outbox.journal, edged.clock; print('ctypes.util' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
