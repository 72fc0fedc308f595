"""The floors of the code, held by a test: imports only go down, and nothing imports itself
in a circle.

    core/      imports nothing of ours
    drivers/   imports core
    edged/     imports core and drivers
    hil/, bench/, tests/   tooling: anything below

Every import counts, at module level or inside a function, under TYPE_CHECKING or not. For
the circles, edged/ is split into its units (a subpackage, or a top-level module):
`edged.services`, `edged.node`... and the other packages are one unit each.

    python -m tests.test_layers [--root DIR]     # the units' circles, as this test sees them
"""

import argparse
import ast
import functools
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "drivers", "edged", "hil", "bench", "tests")
MAY_IMPORT = {
    "core": {"core"},
    "drivers": {"core", "drivers"},
    "edged": {"core", "drivers", "edged"},
}


def modules(root: Path) -> dict[str, Path]:
    """Every module of our packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ours that `name` imports, anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                yield target


def unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "edged" else parts[0]


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    known = modules(root)
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def units(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph collapsed to units (edged's subpackages and modules, other packages)."""
    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            if unit(a) != unit(b):
                out[unit(a)].add(unit(b))
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of more than one node that reach each other (Tarjan, iterative)."""
    nodes = sorted(set(edges) | {b for bs in edges.values() for b in bs})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


@functools.cache
def checkout_edges() -> dict[str, set[str]]:
    """This checkout's graph, parsed once, when a test first asks for it: every xdist worker
    collects this file, and parsing ~900 files at import cost each of them 4 s."""
    return graph(ROOT)


def test_no_package_imports_from_a_floor_above_it() -> None:
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in checkout_edges().items()
        for b in targets
        if a.split(".")[0] in MAY_IMPORT and b.split(".")[0] not in MAY_IMPORT[a.split(".")[0]]
    )
    assert upward == []


def test_edgeds_units_import_each_other_in_no_circle() -> None:
    edged = {a: b for a, b in checkout_edges().items() if a.startswith("edged")}
    assert circles(units(edged)) == []


def test_the_top_level_packages_import_each_other_in_no_circle() -> None:
    top: dict[str, set[str]] = defaultdict(set)
    for a, targets in checkout_edges().items():
        top[a.split(".")[0]] |= {b.split(".")[0] for b in targets} - {a.split(".")[0]}
    assert circles(top) == []


def test_the_check_finds_a_circle_when_there_is_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout (default: this one)")
    args = parser.parse_args()
    edges = graph(args.root)
    code = {a: b for a, b in edges.items() if not a.startswith("tests")}
    found = circles(units(code))
    print(f"{len(units(code))} units importing others (tests aside); {len(found)} circle(s)")
    for group in found:
        print(f"  {len(group)} units: {' '.join(group)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
