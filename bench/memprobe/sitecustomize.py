"""A look inside the daemon's memory for `bench.footprint` (measuring only, never on a node).

On PYTHONPATH with EDGED_MEMPROBE=FILE set, every process started then (or only those
whose command line has the word EDGED_MEMPROBE_ONLY) runs a thread that
waits for FILE.go, then writes FILE: the resident memory split into file-backed pages
(code of the interpreter and native libraries) and anonymous ones (heaps), what Python's
allocators hold (`sys.getallocatedblocks`, and tracemalloc's count when PYTHONTRACEMALLOC is
set), what glibc malloc holds in use and free over all its arenas (`mallinfo2`), how many
arenas (malloc_stats's "Arena N:" lines, written to stderr: the daemon's log), and the RSS
after `malloc_trim(0)` and after `gc.freeze()` — what each lever would give, in place.
"""

import ctypes
import gc
import json
import os
import sys
import threading
import time
import tracemalloc

_PATH = os.environ.get("EDGED_MEMPROBE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _rollup() -> dict[str, float]:
    out = {}
    with open("/proc/self/smaps_rollup", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
                out[key.lower() + "_mb"] = round(int(rest.split()[0]) / 1024, 2)
    return out


def _look(libc: ctypes.CDLL, sqlite: ctypes.CDLL | None) -> dict[str, object]:
    info = libc.mallinfo2()
    mb = 2**20
    out: dict[str, object] = dict(_rollup())
    out["threads"] = threading.active_count()
    out["os_threads"] = len(os.listdir("/proc/self/task"))
    out["python_blocks"] = sys.getallocatedblocks()
    if tracemalloc.is_tracing():
        out["tracemalloc_mb"] = round(tracemalloc.get_traced_memory()[0] / mb, 2)
        out["tracemalloc_own_mb"] = round(tracemalloc.get_tracemalloc_memory() / mb, 2)
    out["malloc_heap_mb"] = round(info.arena / mb, 2)  # sbrk'd and arena heaps
    out["malloc_mmap_mb"] = round(info.hblkhd / mb, 2)  # big blocks mapped one by one
    out["malloc_in_use_mb"] = round(info.uordblks / mb, 2)
    out["malloc_free_mb"] = round(info.fordblks / mb, 2)  # held by malloc, not in use
    if sqlite is not None:  # SQLite's own allocations: page caches, WAL index, statements
        out["sqlite_mb"] = round(sqlite.sqlite3_memory_used() / mb, 2)
        out["sqlite_peak_mb"] = round(sqlite.sqlite3_memory_highwater(0) / mb, 2)
    if "pydantic" in sys.modules:  # models whose validator and serializer were built
        models = _subclasses(sys.modules["pydantic"].BaseModel)
        out["pydantic_models"] = len(models)
        out["pydantic_models_built"] = sum(
            1 for m in models if m.__dict__.get("__pydantic_complete__", False)
        )
    return out


def _subclasses(cls: type) -> list[type]:
    seen: list[type] = []
    todo = list(cls.__subclasses__())
    while todo:
        sub = todo.pop()
        if sub not in seen:
            seen.append(sub)
            todo.extend(sub.__subclasses__())
    return seen


def _probe(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    sqlite: ctypes.CDLL | None = None
    while not os.path.exists(path + ".go"):
        time.sleep(0.2)
    if "_sqlite3" in sys.modules:  # the library the sqlite3 module loaded, not another
        sqlite = ctypes.CDLL(sys.modules["_sqlite3"].__file__)
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.restype = ctypes.c_int64
        sqlite.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    result: dict[str, object] = {"steady": _look(libc, sqlite)}
    _write(path, result)  # each stage as soon as it is known: the process may end
    sys.stderr.flush()
    libc.malloc_stats()  # per arena, to the log
    libc.malloc_trim(0)
    result["after_malloc_trim"] = _look(libc, sqlite)
    _write(path, result)
    gc.collect()
    gc.freeze()
    time.sleep(10)
    result["after_gc_freeze_10s"] = _look(libc, sqlite)
    _write(path, result)


def _write(path: str, result: dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def _chosen() -> bool:
    """EDGED_MEMPROBE_ONLY=WORD: only the processes whose command line has WORD (one child
    of a benchmark whose other processes inherit the environment)."""
    only = os.environ.get("EDGED_MEMPROBE_ONLY")
    if not only:
        return True
    with open("/proc/self/cmdline", "rb") as f:
        return only.encode() in f.read().split(b"\0")


if _PATH and _chosen():
    threading.Thread(target=_probe, args=(_PATH,), name="memprobe", daemon=True).start()
