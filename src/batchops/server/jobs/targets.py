"""Where a webhook may point: the SSRF guard.

A webhook makes the server send requests to a URL a tenant chose, so a target that
resolves to loopback, a private network, link-local (cloud metadata at 169.254.169.254),
shared, reserved, multicast or unspecified addresses is refused — at registration
(:func:`check_target`, a 422) and again at every delivery, since DNS may have changed.
At delivery the HTTP client also connects through :class:`PublicResolver`, which drops
non-public addresses from the very answer it connects to, so a name that re-resolves
between the check and the connection (DNS rebinding) cannot slip through. Redirects are
not followed. ``Settings.allow_private_webhooks`` (``--allow-private-webhooks``) lifts the
address rule, for development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from batchops._exceptions import ValidationError

__all__ = ["MAX_URL_LENGTH", "PublicResolver", "check_target", "is_public", "parse_target"]

MAX_URL_LENGTH = 2048
_RESOLVE_TIMEOUT_S = 5.0
_ALLOW_HINT = (
    "start the server with --allow-private-webhooks (BATCHOPS_ALLOW_PRIVATE_WEBHOOKS=1) "
    "to allow non-public targets"
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) as its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public(address: str | IPAddress) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = _unmapped(ipaddress.ip_address(address) if isinstance(address, str) else address)
    return ip.is_global and not ip.is_multicast


def _kind(ip: IPAddress) -> str:
    ip = _unmapped(ip)
    for attribute, name in (
        ("is_loopback", "loopback"),
        ("is_unspecified", "unspecified"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attribute):
            return name
    return "non-public"


def _refuse(url: str, message: str, code: str = "WEBHOOK_TARGET_NOT_ALLOWED") -> ValidationError:
    return ValidationError(message, code=code, details={"path": "url", "url": url})


def parse_target(url: object) -> SplitResult:
    """The URL, split, if it is an absolute http(s) URL with a host; else 422."""
    if not isinstance(url, str) or not url:
        raise ValidationError("'url' must be an http:// or https:// URL", details={"path": "url"})
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(
            f"'url' is longer than {MAX_URL_LENGTH} characters", details={"path": "url"}
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError(f"'url' is not a valid URL: {exc}", details={"path": "url"}) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            "'url' must be an absolute http:// or https:// URL with a host",
            details={"path": "url", "url": url},
        )
    return parts


async def check_target(url: str, *, allow_private: bool) -> None:
    """422 unless ``url`` is a valid http(s) URL whose host resolves only to public
    addresses (any address when ``allow_private``)."""
    parts = parse_target(url)
    if allow_private:
        return
    host = parts.hostname
    assert host is not None
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(url, host, parts.port)
    for ip in addresses:
        if not is_public(ip):
            raise _refuse(
                url,
                f"the webhook target {host!r} is a {_kind(ip)} address ({ip}); webhook "
                f"targets must be public: {_ALLOW_HINT}",
            )


async def _resolve(url: str, host: str, port: int | None) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise _refuse(
            url,
            f"the webhook target host {host!r} cannot be resolved ({exc})",
            code="WEBHOOK_TARGET_UNRESOLVABLE",
        ) from exc
    found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not found:
        raise _refuse(
            url,
            f"the webhook target host {host!r} has no address",
            code="WEBHOOK_TARGET_UNRESOLVABLE",
        )
    return found


class PublicResolver(ThreadedResolver):
    """aiohttp's resolver, keeping only public addresses (an OSError if none is left)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        public = [r for r in results if is_public(r["host"].split("%", 1)[0])]
        if not public:
            raise OSError(f"{host!r} resolves to no public address; {_ALLOW_HINT}")
        return public
