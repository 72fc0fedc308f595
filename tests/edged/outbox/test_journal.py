"""The tap journal under faults that end a process with a signal, not an exception: a
file cut short under its mapping, a card that fails. The journal runs in a child process
(`tests.helpers.journal_child`); the test reads whether it lived."""

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edged.outbox import journal
from tests.helpers.disk import power_back, power_cut, sd_card

ROOT = Path(__file__).resolve().parents[3]


def started(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.journal_child", str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def write(child: subprocess.Popen[str]) -> str:
    """One record written by the child: its answer, or how it ended."""
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write("write\n")
        child.stdin.flush()
    except BrokenPipeError:
        return f"ended with {child.wait(10)}"
    line = child.stdout.readline().strip()
    return line or f"ended with {child.wait(10)}"


def ended(child: subprocess.Popen[str]) -> int:
    assert child.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        child.stdin.close()
    return child.wait(10)


def test_a_journal_cut_short_by_another_process_does_not_kill_the_node(tmp_path: Path) -> None:
    """Another process truncates the journal (`: > outbox.sqlite-taps`, a clean-up tool):
    a record copied into the mapping past the file's end would be SIGBUS, the daemon
    killed at the instant it opens a door."""
    path = tmp_path / "outbox.sqlite-taps"
    child = started(path)
    assert write(child) == "wrote True"
    subprocess.run(["truncate", "-s", "0", str(path)], check=True)
    after = [write(child) for _ in range(3)]
    assert ended(child) == 0
    assert after[0].startswith("wrote"), after
    assert after[-1] == "wrote True", "the journal is whole again"


@contextlib.contextmanager
def failing_card(where: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """An ext4 card whose blocks can stop being read: its image lies on another card
    (`sd_card`), and cutting that one (`power_cut`) makes every read of the image, so every
    block the inner card's filesystem reads, EIO. Yields the card and what makes it fail."""
    with sd_card(where, 64) as outer, sd_card(outer / "card") as card:
        failed = False

        def fail() -> None:
            nonlocal failed
            power_cut(outer)
            failed = True

        try:
            yield card, fail
        finally:
            if failed:
                power_back(outer)


def test_a_failing_card_under_the_journal_does_not_kill_the_node(tmp_path: Path) -> None:
    """The card fails (every block read EIO) after the kernel evicted the journal's pages
    (a node short of memory): a record copied into a mapped page that must be read from
    the card would be SIGBUS, the daemon killed."""
    with failing_card(tmp_path / "sd") as (card, fail):
        path = card / "outbox.sqlite-taps"
        child = started(path)
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evicted, where it can be
        os.close(fd)
        fail()
        answer = write(child)
        code = ended(child)
    assert (answer, code) == ("wrote True", 0), "the record is in memory, the node lives"


def test_a_journal_the_kernel_will_not_lock_in_memory_writes_with_pwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlock` refused (a unit's `LimitMEMLOCK` too low; root here is never refused, so
    the refusal is played): the records go into the file with `pwrite`, never a mapping."""
    monkeypatch.setattr(journal, "_lock", lambda mm, size: errno.EPERM)
    path = tmp_path / "outbox.sqlite-taps"
    first = journal.Journal(path)
    first.open(0)
    record = journal.Record(first.take_rn(), "t", "events/tap", 7, 1, 1, False, False, 0, b"{}")
    assert first.write(record) and first.mm is None
    first.close()
    again = journal.Journal(path)
    assert [r.seq for r in again.open(0)] == [7]
    again.close()
