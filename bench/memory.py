"""What a process's resident memory is made of, from /proc (the footprint and outbox benches)."""


def resident_split(pid: int | str) -> dict[str, float] | None:
    """RSS split into anonymous pages (heaps: Python's objects, malloc's arenas, thread
    stacks) and file-backed ones (the interpreter's and native libraries' code, mapped files
    such as the outbox journal), in MB; None when the process is gone."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Anonymous"):
                    found[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if len(found) != 2:
        return None
    return {
        "rss_anon_mb": round(found["Anonymous"] / 1024, 1),
        "rss_file_mb": round((found["Rss"] - found["Anonymous"]) / 1024, 1),
    }


def sqlite_memory_used() -> int:
    """Bytes SQLite itself holds in this process now, over every connection (page caches,
    prepared statements, WAL indexes): `sqlite3_memory_used` of the library the `sqlite3`
    module runs on."""
    import ctypes
    import sqlite3
    import sys

    assert sqlite3.sqlite_version  # _sqlite3 is loaded
    lib = ctypes.CDLL(sys.modules["_sqlite3"].__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())
