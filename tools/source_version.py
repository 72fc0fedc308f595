"""The version of the edged source tree at ARGV[1]: `__version__` in edged/__init__.py.

    python3 tools/source_version.py /path/to/checkout

Read from the source as setuptools reads it for the wheel (pyproject.toml's `attr`): the
literal assigned, without importing the package (which would need its dependencies).
Standard library only: install.sh runs it with the system's Python before any venv exists.
"""

import ast
import sys
from pathlib import Path


def source_version(checkout: Path) -> str:
    init = checkout / "edged" / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"), str(init))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ValueError(f"{init} sets no __version__ = \"...\" (a string literal)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        print(source_version(Path(argv[1])))
    except (OSError, SyntaxError, ValueError) as exc:
        print(f"cannot tell the version of {argv[1]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
