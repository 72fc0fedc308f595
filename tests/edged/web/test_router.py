"""Which handler answers: exact paths, one `{name}` last segment, 404 and 405."""

import pytest

from edged.web.message import HttpError, Request, Response
from edged.web.router import Router


async def page(_: Request) -> Response:
    return Response(200, b"page")


async def other(_: Request) -> Response:
    return Response(200, b"other")


def router() -> Router:
    r = Router()
    r.get("/", page)
    r.get("/static/{name}", other)
    r.post("/api/requests", page)
    return r


def test_exact_paths_and_a_named_segment_resolve() -> None:
    r = router()
    assert r.resolve("GET", "/") == (page, {})
    assert r.resolve("GET", "/static/kiosk.js") == (other, {"name": "kiosk.js"})
    assert r.resolve("POST", "/api/requests") == (page, {})


@pytest.mark.parametrize(
    "path", ["", "/static/", "/static", "/static/a/b", "/static/../x", "//", "/api/requests/"]
)
def test_anything_else_is_404(path: str) -> None:
    with pytest.raises(HttpError) as exc:
        router().resolve("GET", path)
    assert exc.value.status == 404 and exc.value.code == "not_found"


def test_head_is_answered_by_get() -> None:
    assert router().resolve("HEAD", "/static/a.css") == (other, {"name": "a.css"})


def test_a_known_path_with_another_method_is_405_naming_what_is_allowed() -> None:
    r = router()
    with pytest.raises(HttpError) as exc:
        r.resolve("GET", "/api/requests")
    assert exc.value.status == 405 and exc.value.headers == {"Allow": "POST"}
    with pytest.raises(HttpError) as exc:
        r.resolve("PUT", "/")
    assert exc.value.headers == {"Allow": "GET, HEAD"}


def test_routes_are_listed_in_the_order_added_without_head() -> None:
    assert router().routes() == [("GET", "/"), ("GET", "/static/{name}"), ("POST", "/api/requests")]


@pytest.mark.parametrize("path", ["static", "/{a}/x", "/a{b}", "/{a/b}"])
def test_a_route_that_cannot_be_matched_is_refused_when_added(path: str) -> None:
    with pytest.raises(ValueError):
        Router().get(path, page)


def test_a_route_added_twice_is_refused() -> None:
    r = router()
    with pytest.raises(ValueError):
        r.get("/", other)
