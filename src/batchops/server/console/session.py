"""Who is signed in to the console, and the checks every console request passes.

The session is the API key itself, in a cookie the page's scripts cannot read:
``HttpOnly`` (no script, so no injected script, reads it), ``SameSite=Strict`` (no other
site's page makes the browser send it), ``Path=/console`` (the API's routes never see it:
they take keys from headers only), ``Secure`` when the request came over https, and no
``Max-Age`` (it ends with the browser session). Stateless on purpose: every process of a
``serve --workers N`` or of a cluster checks it the same way, with the same code the API
uses (:meth:`~batchops.server.auth.Authenticator.authenticate`), so a revoked key signs the
console out on its next request. The key never appears in a URL or in a page.

Cross-site request forgery: besides ``SameSite=Strict``, every console ``POST`` (sign-in
included: a forged sign-in would put the victim in the attacker's tenant) must come from a
page of this origin, as its ``Origin`` header (or, when a browser sends none, its
``Referer``) says; anything else is a 403 ``CROSS_SITE_REQUEST``. Browsers set both headers
themselves and no page script can change them. Stateless too: no token to store or render.
"""

from __future__ import annotations

from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.responses import Response

from batchops._exceptions import AuthenticationError, PermissionDeniedError
from batchops.server.auth import Caller
from batchops.server.deps import ServicesDep

__all__ = [
    "COOKIE",
    "ConsoleCallerDep",
    "SameOriginDep",
    "SignInRequired",
    "clear_session",
    "console_caller",
    "same_origin",
    "set_session",
]

COOKIE: Final = "batchops_console"
"""The name of the session cookie (it holds the API key)."""

PATH: Final = "/console"


class SignInRequired(Exception):
    """No (valid) session: the console answers with its sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def set_session(response: Response, request: Request, key: str) -> None:
    """Sign the browser in: the session cookie holds ``key`` (see the module docstring)."""
    response.set_cookie(
        COOKIE,
        key,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response, request: Request) -> None:
    """Sign the browser out: the cookie is expired with the flags it was set with."""
    response.delete_cookie(
        COOKIE, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


async def console_caller(request: Request, svc: ServicesDep) -> Caller:
    """The signed-in caller, authenticated as the API authenticates a key and within the
    key's request budget; :class:`SignInRequired` when there is no valid session."""
    key = request.cookies.get(COOKIE)
    if not key:
        raise SignInRequired("Sign in with an API key.")
    try:
        caller = await svc.authenticator.authenticate(key, request)
    except AuthenticationError:
        raise SignInRequired("The API key is unknown or revoked: sign in again.") from None
    request.state.rate_headers = await svc.limiter.hit_request(caller.key_id)
    return caller


ConsoleCallerDep = Annotated[Caller, Depends(console_caller)]


def same_origin(request: Request) -> None:
    """403 ``CROSS_SITE_REQUEST`` unless the request comes from a page of this server (its
    ``Origin``, else its ``Referer``, names the host the request was sent to)."""
    source = request.headers.get("origin")
    if source is None or source == "null":
        source = request.headers.get("referer")
    host = request.headers.get("host")
    if not source or not host or urlsplit(source).netloc.lower() != host.lower():
        raise PermissionDeniedError(
            "the console accepts forms sent from its own pages only",
            code="CROSS_SITE_REQUEST",
            details={"origin": request.headers.get("origin")},
        )


SameOriginDep = Annotated[None, Depends(same_origin)]
