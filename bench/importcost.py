"""What each library costs in the daemon's own import set, in the order the daemon loads it.

    python -m bench.importcost < modules.json

Reads a JSON list of module names in the order a process finished importing them (the
`-X importtime` log of `edged run`: a module is listed once its own imports are done), imports
them in that order in this fresh interpreter and reads the resident memory after each. A
module's dependencies come before it, so each step loads that module alone and its cost is
charged to its top-level package ("stdlib" for the standard library). Libraries measured
alone overlap (asyncio, ssl, typing...): here each byte is charged once, to the first package
that needed it. Standard library only: what this module imports is not charged to anyone.

Prints one JSON object: `start_mb` (this interpreter before the first import), `end_mb`,
`packages` (top-level package -> MB, in the order first loaded), `failed` (modules the
daemon tried to import and did not find, or that would not import outside it: not charged).
"""

import importlib
import json
import os
import sys

_PAGE = os.sysconf("SC_PAGE_SIZE")
_OURS = ("edged", "drivers", "core")


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def package_of(module: str) -> str:
    top = module.split(".")[0]
    if top in _OURS:
        return top
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("_"):
        return "stdlib"
    return top


def replay(modules: list[str]) -> dict[str, object]:
    start = before = rss_mb()
    packages: dict[str, float] = {}
    failed: list[str] = []
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # a module tried only where it exists (nt, _winapi, socks...)
            failed.append(name)
            continue
        after = rss_mb()
        package = package_of(name)
        packages[package] = packages.get(package, 0.0) + after - before
        before = after
    return {
        "start_mb": round(start, 1),
        "end_mb": round(before, 1),
        "packages": {k: round(v, 2) for k, v in packages.items()},
        "failed": failed,
    }


if __name__ == "__main__":
    print(json.dumps(replay(json.load(sys.stdin))))
