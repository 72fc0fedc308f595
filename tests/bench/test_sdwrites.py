"""bench.sdwrites: the strace lines it reads, attributed per file."""

from pathlib import Path

from bench.sdwrites import Trace


def test_the_trace_counts_writes_and_syncs_per_data_file_and_the_log_apart(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "card", tmp_path / "edged.log"
    lines = [
        f'12  pwrite64(11<{data}/outbox.sqlite-wal>, ""..., 24, 0) = 24',
        f'12  pwrite64(11<{data}/outbox.sqlite-wal>, ""..., 4096, 24) = 4096',
        f"12  fdatasync(11<{data}/outbox.sqlite-wal>) = 0",
        f'12  pwrite64(14<{data}/outbox.sqlite-marks>, ""..., 167, 0) = 167',
        f'9  write(1<{log}>, ""..., 80) = 80',
        '9  write(7<socket:[123]>, ""..., 300) = 300',
        f'12  pwrite64(11<{data}/outbox.sqlite-wal>, ""..., 4096, 4120) = -1 ENOSPC',
    ]
    path = tmp_path / "strace.txt"
    path.write_text("first line before the mark\n")
    trace = Trace(path, data, log)
    trace.mark()
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")
    assert trace.since_mark() == {
        "outbox.sqlite-wal": {"bytes": 4120, "writes": 2, "syncs": 1},
        "outbox.sqlite-marks": {"bytes": 167, "writes": 1, "syncs": 0},
        "log (stderr)": {"bytes": 80, "writes": 1, "syncs": 0},
    }
