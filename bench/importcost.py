"""What each library costs in the daemon's own import set, in the order the daemon loads it.

    python -m bench.importcost < modules.json

Reads a JSON list of module names in the order a process finished importing them (the
`-X importtime` log of `edged run`: a module is listed once its own imports are done), imports
them in that order in this fresh interpreter and reads the resident memory after each. A
module's dependencies come before it, so each step loads that module alone and its cost is
charged to its top-level package ("stdlib" for the standard library). Libraries measured
alone overlap (asyncio, ssl, typing...): here each byte is charged once, to the first package
that needed it. Standard library only: what this module imports is not charged to anyone.

Each module is also charged on its own (`modules`): the memory that appeared while its body
ran, less what the modules it imported took meanwhile. That is what making one module lazy
can give back (#19), where the package figure says only where to look. Importing `a.b` runs
`a/__init__` first, and the replay lists `a.b` before `a` (a package finishes after its
submodules), so `packages` charges that step to the package of `a.b`; `modules` splits it.

Prints one JSON object: `start_mb` (this interpreter before the first import), `end_mb`,
`packages` (top-level package -> MB, in the order first loaded), `modules` (the `TOP`
costliest modules, own cost in MB, costliest first), `failed` (modules the daemon tried to
import and did not find, or that would not import outside it: not charged).
"""

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")
_OURS = ("edged", "drivers", "core")
TOP = 40


def rss_mb() -> float:
    """Resident MB, read without a codec (the import hook below runs this inside imports)."""
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        return int(os.read(fd, 200).split()[1]) * _PAGE / 2**20
    finally:
        os.close(fd)


def package_of(module: str) -> str:
    top = module.split(".")[0]
    if top in _OURS:
        return top
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("_"):
        return "stdlib"
    return top


class _Own:
    """Wraps each loader so a module's body is timed in RSS, its nested imports taken out."""

    def __init__(self) -> None:
        self.costs: dict[str, float] = {}
        self._stack: list[list[float]] = []  # [RSS at start, what nested modules took]

    def run(self, name: str, body: Any, module: types.ModuleType) -> None:
        frame = [rss_mb(), 0.0]
        self._stack.append(frame)
        try:
            body(module)
        finally:
            self._stack.pop()
            took = rss_mb() - frame[0]
            self.costs[name] = self.costs.get(name, 0.0) + took - frame[1]
            if self._stack:
                self._stack[-1][1] += took


class _Timed(importlib.abc.Loader):
    def __init__(self, name: str, loader: Any, own: _Own) -> None:
        self.name, self.loader, self.own = name, loader, own

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        module: types.ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        self.own.run(self.name, self.loader.exec_module, module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds as the others do, and times the loader it found (`_Timed`)."""

    def __init__(self, own: _Own) -> None:
        self.own = own

    def find_spec(
        self, name: str, path: Any, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(name, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Timed(name, spec.loader, self.own)
            return spec
        return None


def replay(modules: list[str]) -> dict[str, object]:
    own = _Own()
    sys.meta_path.insert(0, _Finder(own))
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
        "modules": {
            k: round(v, 2) for k, v in sorted(own.costs.items(), key=lambda kv: -kv[1])[:TOP]
        },
        "failed": failed,
    }


if __name__ == "__main__":
    print(json.dumps(replay(json.load(sys.stdin))))
