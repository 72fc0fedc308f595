"""Which handler answers a method and a path: exact paths, and paths ending in one
`{name}` segment (a file name: never a '/', never empty)."""

from collections.abc import Awaitable, Callable

from edged.web.message import HttpError, Request, Response

Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Routes added once at start; a lookup is a dict access (a prefix scan for the few
    `{name}` routes). GET routes answer HEAD too, as HTTP requires."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: dict[str, tuple[str, dict[str, Handler]]] = {}
        self._order: list[tuple[str, str]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        if not path.startswith("/"):
            raise ValueError(f"a route's path starts with '/': {path!r}")
        method = method.upper()
        if "{" in path or "}" in path:
            prefix, _, name = path.rpartition("{")
            if (
                not prefix.endswith("/")
                or not name.endswith("}")
                or any(c in prefix for c in "{}")
                or any(c in name[:-1] for c in "{}/")
                or name == "}"
            ):
                raise ValueError(f"only a whole last segment can be a {{name}}: {path!r}")
            _, table = self._prefix.setdefault(prefix, (name[:-1], {}))
        else:
            table = self._exact.setdefault(path, {})
        if method in table:
            raise ValueError(f"{method} {path} has a handler already")
        table[method] = handler
        self._order.append((method, path))

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of each route, in the order added (HEAD not named)."""
        return list(self._order)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and what `{name}` matched; 404 for an unknown path, 405 (with
        Allow) for a known path and another method."""
        params: dict[str, str] = {}
        table = self._exact.get(path)
        if table is None:
            prefix, _, last = path.rpartition("/")
            found = self._prefix.get(prefix + "/") if last else None
            if found is None:
                raise HttpError(404, "not_found", "no such page")
            params = {found[0]: last}
            table = found[1]
        handler = table.get(method) or (table.get("GET") if method == "HEAD" else None)
        if handler is None:
            allowed = sorted({*table, *(("HEAD",) if "GET" in table else ())})
            raise HttpError(
                405,
                "method_not_allowed",
                f"{method} is not allowed here",
                {"Allow": ", ".join(allowed)},
            )
        return handler, params
