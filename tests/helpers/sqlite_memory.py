"""What SQLite itself holds in this process (page caches, prepared statements, WAL index)."""

import ctypes
import sqlite3
import sys


def sqlite_memory_used() -> int:
    """Bytes SQLite has allocated now, over every connection (`sqlite3_memory_used`), from
    the library the `sqlite3` module runs on."""
    assert sqlite3.sqlite_version  # _sqlite3 is loaded
    lib = ctypes.CDLL(sys.modules["_sqlite3"].__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())
