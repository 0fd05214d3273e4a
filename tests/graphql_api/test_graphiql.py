"""GraphiQL at ``GET /graphql``: a page that loads every asset from this server, the
assets themselves, and the test that tells a browser from a GraphQL ``GET``.

The app here is the smallest one that serves the IDE the way the real one does: the
asset routes, and a ``GET /graphql`` answering the page when :func:`wants_ide` says so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib.resources import files

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from batchops.server.graphql.graphiql import (
    graphiql_html,
    graphiql_response,
    routes,
    wants_ide,
)
from batchops.server.http import JSONResponse, install_error_handlers

BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)

# Every attribute through which a browser loads something by itself.
_LOADED = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)="([^"]*)\"""")


def ide_app() -> FastAPI:
    """The asset routes, and ``GET /graphql`` answering the IDE to a browser (and, in
    place of the GraphQL endpoint, a marker to anything else)."""
    app = FastAPI()
    install_error_handlers(app)
    app.router.routes.extend(routes)

    @app.get("/graphql")
    async def graphql_get(request: Request) -> Response:
        if wants_ide(request):
            return graphiql_response()
        return JSONResponse({"graphql": "not the IDE"})

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ide_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def _page(client: httpx.AsyncClient) -> str:
    response = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


async def test_a_browser_gets_the_graphiql_page_at_get_graphql(
    client: httpx.AsyncClient,
) -> None:
    page = await _page(client)

    assert '<div id="graphiql"' in page


async def test_the_page_loads_only_assets_under_graphql_static(client: httpx.AsyncClient) -> None:
    loaded = _LOADED.findall(await _page(client))

    assets = [url for url in loaded if not url.startswith("data:")]
    assert len(assets) == 6
    assert all(url.startswith("/graphql/static/") for url in assets), loaded


async def test_the_page_names_no_url_of_another_host(client: httpx.AsyncClient) -> None:
    page = await _page(client)

    assert not re.search(r"(?:https?:)?//[a-z0-9]", page, re.IGNORECASE)


async def test_every_asset_the_page_loads_answers_with_its_content_type_and_caching(
    client: httpx.AsyncClient,
) -> None:
    expected = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    assets = [url for url in _LOADED.findall(await _page(client)) if url.startswith("/")]

    for url in assets:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == expected[url[url.rindex(".") :]], url
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content, url


async def test_the_assets_need_no_api_key(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql/static/graphiql.min.js", headers={"Authorization": "Bearer wrong"}
    )

    assert response.status_code == 200


async def test_the_licences_of_the_vendored_assets_are_served_too(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql/static/LICENSES.txt")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    for package in ("graphiql 3.9.0", "react 18.3.1", "react-dom 18.3.1"):
        assert package in response.text


async def test_an_unknown_asset_is_a_404_in_the_error_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql/static/graphiql.js")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_a_path_traversal_to_the_module_is_a_404_in_the_error_envelope(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql/static/..%2Fgraphiql.py")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert "import" not in response.text


async def test_the_page_carries_a_csp_that_allows_scripts_from_this_origin_only(
    client: httpx.AsyncClient,
) -> None:
    page = await _page(client)
    response = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})

    assert 'http-equiv="Content-Security-Policy"' in page
    assert "<script>" not in page  # the bootstrap is a file: no inline script to allow
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"


def test_the_page_does_not_persist_headers_and_suggests_a_bearer_key() -> None:
    page = graphiql_html()
    init = _static_file("graphiql-init.js").decode()

    assert 'data-default-headers="{&quot;Authorization&quot;: &quot;Bearer &lt;your API' in page
    assert "shouldPersistHeaders: false" in init
    assert 'credentials: "same-origin"' in init


def test_the_page_posts_to_the_endpoint_it_is_given() -> None:
    assert 'data-endpoint="/v2/graphql"' in graphiql_html("/v2/graphql")


def test_an_endpoint_on_another_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="a path on this server"):
        graphiql_html("https://elsewhere.example/graphql")


async def test_a_json_client_gets_graphql_not_the_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "application/json"})

    assert response.json() == {"graphql": "not the IDE"}


@pytest.mark.parametrize(
    "accept",
    [
        BROWSER_ACCEPT,
        "text/html",
        "text/*;q=0.9, application/json;q=0.5",
    ],
)
def test_wants_ide_is_true_for_a_get_that_prefers_html(accept: str) -> None:
    assert wants_ide(_request("GET", accept=accept))


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "application/graphql-response+json, application/json;q=0.9",
        "*/*",
        "",
        "text/html, application/json",
        "text/html;q=0.5, application/json",
        "text/html;q=0",
    ],
)
def test_wants_ide_is_false_when_html_is_not_preferred_over_json(accept: str) -> None:
    assert not wants_ide(_request("GET", accept=accept))


def test_wants_ide_is_false_for_a_get_with_a_query_parameter() -> None:
    assert not wants_ide(_request("GET", accept=BROWSER_ACCEPT, query_string=b"query=%7Ba%7D"))


def test_wants_ide_is_false_for_a_get_with_an_empty_query_parameter() -> None:
    assert not wants_ide(_request("GET", accept=BROWSER_ACCEPT, query_string=b"query="))


def test_wants_ide_is_false_for_a_post() -> None:
    assert not wants_ide(_request("POST", accept=BROWSER_ACCEPT))


def _request(method: str, *, accept: str, query_string: bytes = b"") -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "path": "/graphql",
            "query_string": query_string,
            "headers": [(b"accept", accept.encode())],
        }
    )


def _static_file(name: str) -> bytes:
    return files("batchops.server.graphql").joinpath("static", name).read_bytes()
