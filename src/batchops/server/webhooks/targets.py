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

An IPv6 address may embed an IPv4 address that the packet ends up at: IPv4-mapped
(``::ffff:127.0.0.1``), IPv4-compatible (``::127.0.0.1``), IPv4-translated, NAT64
(``64:ff9b::a9fe:a9fe`` is 169.254.169.254 through the gateway's translator), 6to4
(``2002:7f00:1::``) and Teredo (server and client). Python's ``is_global`` judges only the
IPv6 prefix and calls most of these global, so an address is public only if it is globally
routable AND every IPv4 it embeds is public (:func:`is_public`, the one check both
registration and delivery use); the refusal names the embedded IPv4. The local-use NAT64
prefix 64:ff9b:1::/48 (RFC 8215) places its IPv4 where the operator chose, so all of it is
refused; Teredo is never global. NAT64 under an operator's own network-specific prefix looks
like any global address and cannot be recognised here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from batchops._exceptions import ValidationError

__all__ = [
    "MAX_URL_LENGTH",
    "URL_PATTERN",
    "PublicResolver",
    "check_target",
    "is_public",
    "parse_target",
]

MAX_URL_LENGTH = 2048


def _ipv6_pattern() -> str:
    # RFC 3986 §3.2.2 IPv6address, every form of which ipaddress.IPv6Address takes.
    h16 = "[0-9A-Fa-f]{1,4}"
    octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
    ls32 = f"(?:{h16}:{h16}|{octet}(?:\\.{octet}){{3}})"
    forms = [f"(?:{h16}:){{6}}{ls32}", f"::(?:{h16}:){{5}}{ls32}"]
    forms += [f"(?:{h16})?::(?:{h16}:){{4}}{ls32}"]
    forms += [f"(?:(?:{h16}:){{0,{n}}}{h16})?::(?:{h16}:){{{3 - n}}}{ls32}" for n in (1, 2)]
    forms += [f"(?:(?:{h16}:){{0,3}}{h16})?::{h16}:{ls32}"]
    forms += [f"(?:(?:{h16}:){{0,4}}{h16})?::{ls32}"]
    forms += [f"(?:(?:{h16}:){{0,5}}{h16})?::{h16}", f"(?:(?:{h16}:){{0,6}}{h16})?::"]
    return "|".join(forms)


_LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
URL_PATTERN = (
    "[Hh][Tt][Tt][Pp][Ss]?://"
    "(?:[A-Za-z0-9._~!$&'()*+,;=:%-]*@)?"
    f"(?:{_LABEL}(?:\\.{_LABEL})*\\.?|\\[(?:{_ipv6_pattern()})\\])"
    "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
    "(?:[/?#][!-~]*)?"
)
"""A webhook URL, whole (``re.fullmatch``; the OpenAPI document states it too): http(s),
optional user info, a host name (ASCII labels of 1-63 letters, digits, ``_`` and ``-``;
IDN names as ``xn--``) or a bracketed IPv6 address, an optional port (0-65535), then any
printable ASCII. What ``urlsplit`` lets through beyond this (spaces, control characters,
``*`` in a host) is refused whether or not private targets are allowed."""
_URL_RE = re.compile(URL_PATTERN)
_RESOLVE_TIMEOUT_S = 5.0
_ALLOW_HINT = (
    "start the server with --allow-private-webhooks (BATCHOPS_ALLOW_PRIVATE_WEBHOOKS=1) "
    "to allow non-public targets"
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits: traffic to them
# is delivered (by the host's stack, a translator or a tunnel) to that IPv4 address.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 §2.1 (SIIT)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
# Local-use NAT64 (RFC 8215): the operator picks a /48 to /96 sub-prefix, so the IPv4 may sit
# at bits 48, 64 or 96 and cannot be located reliably: the whole prefix is refused.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# 6to4 (RFC 3056): the IPv4 in bits 16-47 (``.sixtofour``). Python releases with the
# CVE-2024-4032 fix call all of 2002::/16 non-global, older ones global: pinned here, so it is
# judged by its IPv4 alone whatever the Python version.
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")


def _embedded(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address embeds, by which it reaches IPv4 hosts:
    IPv4-mapped, IPv4-compatible (but not ``::`` and ``::1``, themselves), IPv4-translated,
    NAT64 (64:ff9b::/96), 6to4 and Teredo (server and de-obfuscated client)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.teredo is not None:
        return ip.teredo
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if int(ip) > 1 and any(ip in net for net in (_IPV4_COMPATIBLE, _IPV4_TRANSLATED, _NAT64)):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()


def _routable(ip: IPAddress) -> bool:
    """Globally routable unicast, by the address's own prefix (not what it embeds)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        if ip.ipv4_mapped is not None or ip in _SIXTOFOUR:
            return True  # only a wrapper: as routable as the IPv4 it embeds
    return ip.is_global and not ip.is_multicast


def is_public(address: str | IPAddress) -> bool:
    """A globally routable unicast address every embedded IPv4 of which is public too: an
    IPv6 form that embeds an IPv4 (``::ffff:127.0.0.1``, ``64:ff9b::a9fe:a9fe``,
    ``2002:7f00:1::``, …) reaches that IPv4, which Python's ``is_global`` does not see."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    return _routable(ip) and all(_routable(v4) for v4 in _embedded(ip))


def _kind(ip: IPAddress) -> str:
    """What kind of non-public address ``ip`` is, by its own prefix: "loopback", …"""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        if ip.teredo is not None:
            return "Teredo"
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


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"


def _why(ip: IPAddress) -> str:
    """Why ``ip`` is refused: "a loopback address (::1)", or for an IPv6 form that embeds
    a non-public IPv4 "an IPv6 address (64:ff9b::7f00:1) that embeds 127.0.0.1, a loopback
    address"."""
    for v4 in _embedded(ip):
        if not _routable(v4):
            return f"an IPv6 address ({ip}) that embeds {v4}, {_a(_kind(v4))}"
    return f"{_a(_kind(ip))} ({ip})"


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
    try:
        # What getaddrinfo does with a host name first: an empty label (``a..b``) or one
        # over 63 characters raised UnicodeError there, a 500 instead of this 422.
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise ValidationError(
            f"'url' has a host name that is not valid: {exc}",
            details={"path": "url", "url": url},
        ) from None
    if _URL_RE.fullmatch(url) is None:
        raise ValidationError(
            "'url' must be an http(s) URL of printable ASCII whose host is a name (labels "
            "of letters, digits, '-' and '_'; IDN names as xn--) or an IP address",
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
                f"the webhook target {host!r} is {_why(ip)}; webhook "
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
