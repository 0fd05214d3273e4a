"""GraphiQL, the in-browser GraphQL IDE, at ``GET /graphql``: the page and its assets.

Every asset is served by the package itself from ``static/`` (GraphiQL 3.9.0, React and
ReactDOM 18.3.1, each a UMD build copied unmodified from npm; ``static/LICENSES.txt`` says
which file came from where). The page loads nothing from any other origin, so it works on
a machine without internet access and its Content-Security-Policy can be strict.

- :func:`graphiql_html` is the page; :func:`graphiql_response` is that page with the
  security headers that only a response can carry.
- :data:`routes` serves the assets at ``GET /graphql/static/{name}``.
- :func:`wants_ide` tells a browser asking for the page from a GraphQL ``GET``.

The page and its assets hold no data, so they need no API key; the queries the page sends
do, and the user types the key into GraphiQL's headers editor. GraphiQL is told not to
keep headers in the browser's storage (see ``static/graphiql-init.js``).
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from batchops._exceptions import NotFoundError

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY",
    "STATIC_PATH",
    "graphiql_html",
    "graphiql_response",
    "routes",
    "wants_ide",
]

_PACKAGE: Final = "batchops.server.graphql"

STATIC_PATH: Final = "/graphql/static"
"""Where the assets are served, from the server's root (the page names them this way)."""

DEFAULT_QUERY: Final = '{ record(collection: "people", id: "p1") { id version data } }'
"""The example in the query editor on a first visit."""

DEFAULT_HEADERS: Final = '{"Authorization": "Bearer <your API key>"}'
"""The headers editor's text on every visit (headers are never stored in the browser)."""

# 'unsafe-inline' for styles only: GraphiQL's dialogs add a <style> element when they open
# (their scroll lock; Chromium blocks it under style-src 'self'); no script runs inline.
# data: for fonts and images: graphiql.min.css embeds its fonts and a few icons that way.
# connect-src 'self': the fetcher posts to this origin only. A <meta> policy cannot say
# frame-ancestors (browsers ignore it there), so that one is in the response header only.
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)
_CSP_HEADER: Final = _CSP + "; frame-ancestors 'none'"

_CONTENT_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

# Assets are versioned by the package, not by their URL: a day of caching is the
# trade-off between repeat visits and a browser holding an old file after an upgrade.
_ASSET_HEADERS: Final = {
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
}


def _static_names() -> frozenset[str]:
    """The files of ``static/`` that may be served: only these names are ever looked up,
    so no request path can reach another file of the package."""
    folder = files(_PACKAGE).joinpath("static")
    return frozenset(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(suffix) for suffix in _CONTENT_TYPES)
    )


_STATIC_NAMES: Final = _static_names()


def graphiql_html(endpoint: str = "/graphql") -> str:
    """The GraphiQL page, sending its queries to ``endpoint`` (a path on this server).

    The page loads only ``/graphql/static/…`` assets and runs no inline script: GraphiQL
    is started by ``static/graphiql-init.js``, which reads the endpoint, the example
    query and the default headers (``{"Authorization": "Bearer <your API key>"}``) from
    the ``#graphiql`` element's ``data-*`` attributes. A ``<meta>`` Content-Security-Policy
    comes with the page wherever it is served; :func:`graphiql_response` adds the rest.

    >>> "/graphql/static/graphiql.min.js" in graphiql_html()
    True
    """
    # The CSP allows connections to this origin only, so an endpoint elsewhere could
    # never be reached: refuse it here rather than ship a page that cannot work.
    if not endpoint.startswith("/") or endpoint.startswith("//"):
        raise ValueError(f"endpoint must be a path on this server, like /graphql: {endpoint!r}")

    def attr(value: str) -> str:
        return html.escape(value, quote=True)

    def asset(name: str) -> str:
        return attr(f"{STATIC_PATH}/{name}")

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{attr(_CSP)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>batchops · GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{asset("graphiql.min.css")}">
<link rel="stylesheet" href="{asset("graphiql-page.css")}">
</head>
<body>
<div id="graphiql" data-endpoint="{attr(endpoint)}" data-default-query="{attr(DEFAULT_QUERY)}"
 data-default-headers="{attr(DEFAULT_HEADERS)}">Loading GraphiQL…</div>
<noscript>GraphiQL needs JavaScript. Send GraphQL queries to POST {attr(endpoint)}.</noscript>
<script src="{asset("react.production.min.js")}"></script>
<script src="{asset("react-dom.production.min.js")}"></script>
<script src="{asset("graphiql.min.js")}"></script>
<script src="{asset("graphiql-init.js")}"></script>
</body>
</html>
"""


def graphiql_response(endpoint: str = "/graphql") -> HTMLResponse:
    """:func:`graphiql_html` as a response, with the headers a ``<meta>`` cannot carry:
    the CSP with ``frame-ancestors 'none'`` (no framing, so no clickjacking of a page
    holding an API key), ``nosniff``, and ``no-cache`` (the page is tiny, and names the
    assets of the running version)."""
    return HTMLResponse(
        graphiql_html(endpoint),
        headers={
            "Content-Security-Policy": _CSP_HEADER,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@cache
def _read_static(name: str) -> bytes:
    # A handful of files that never change while the process runs: read each once.
    return files(_PACKAGE).joinpath("static", name).read_bytes()


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC_NAMES:
        raise NotFoundError(f"no such GraphiQL asset: {name!r}", details={"name": name})
    content_type = _CONTENT_TYPES[name[name.rindex(".") :]]
    return Response(_read_static(name), headers={**_ASSET_HEADERS, "Content-Type": content_type})


routes: list[BaseRoute] = [
    Route(STATIC_PATH + "/{name}", _static, methods=["GET"], name="graphiql_static"),
]
"""``GET /graphql/static/{name}``: GraphiQL's assets, without authentication (they hold
no data). A name that is not a file of ``static/`` is a 404 in the JSON error envelope."""


def _quality(accept: str, media_type: str) -> float:
    """The quality ``accept`` gives ``media_type``, from its most specific matching range
    (``type/subtype`` over ``type/*`` over ``*/*``, RFC 9110 §12.5.1); 0 when none does."""
    main = media_type.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        range_, *params = (part.strip() for part in item.split(";"))
        range_ = range_.lower()
        if range_ == media_type:
            specificity = 2
        elif range_ == f"{main}/*":
            specificity = 1
        elif range_ == "*/*":
            specificity = 0
        else:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if specificity > best[0]:
            best = (specificity, quality)
    return best[1]


def wants_ide(request: Request) -> bool:
    """Whether ``request`` is a browser asking for the IDE rather than a GraphQL query:
    a ``GET`` (or its ``HEAD``) without a ``query`` parameter whose ``Accept`` ranks
    ``text/html`` above every JSON answer a GraphQL endpoint gives.

    A browser's ``Accept: text/html,…,*/*;q=0.8`` is the IDE; ``application/json``,
    a bare ``*/*`` (curl) and any ``?query=…`` (a GraphQL GET) are not.
    """
    if request.method not in ("GET", "HEAD") or "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    html_quality = _quality(accept, "text/html")
    json_quality = max(
        _quality(accept, "application/json"),
        _quality(accept, "application/graphql-response+json"),
    )
    return html_quality > json_quality
