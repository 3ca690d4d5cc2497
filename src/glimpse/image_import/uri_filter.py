"""Which URIs web-download may fetch: ``[import_filtering_opts]`` (guide 4.2).

The decision, in the guide's order; the first refusal wins:

1. scheme: missing -> refuse; an allowlist (``allowed_schemes``), if not empty, is
   honoured and the blocklist (``disallowed_schemes``) ignored; otherwise a scheme in
   the blocklist is refused.
2. host: missing -> refuse; then ``allowed_hosts`` over ``disallowed_hosts`` the same way.
3. port, only when the URI names one: ``allowed_ports`` over ``disallowed_ports``. A URI
   without a port uses its scheme's default port and is allowed (guide 4.2: with the
   defaults, ``ftp://example.org/`` passes once ftp is allowed, ``ftp://example.org:21/``
   does not).

Stricter than the list rules, and before them, hosts must be written plainly, so that
a list entry cannot be dodged by another spelling of the same address: refused are
userinfo (``http://allowed@other/``), IPv4 written in decimal, octal, hex or shortened
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) or any name whose last label is a
number, IPv6 zone ids, percent-encoded or non-ASCII hosts, and the unspecified addresses
``0.0.0.0`` and ``::``. Host entries match case-insensitively, without a trailing dot, IP
addresses in canonical form, and an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``)
matches its IPv4 entry too.

``check_resolved`` applies the host rules to every address a name resolves to, so
``localhost`` is refused when ``127.0.0.1`` is disallowed. With an allowlist, a name on
the list is trusted with whatever it resolves to (the operator named it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from glimpse.config import ImportSettings
from glimpse.domain.errors import InvalidInput

OPTS = "[import_filtering_opts]"

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# What inet_aton would read as a number: decimal, octal (leading 0) or hex.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")


class _Refused(Exception):
    """A refusal by a helper; the public functions turn it into InvalidInput."""


def _refuse(reason: str) -> NoReturn:
    raise _Refused(reason)


def _shown(uri: str) -> str:
    """The URI for a message: userinfo (a password?) blanked, length bounded."""
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:
        netloc = ""
    if "@" in netloc:
        uri = uri.replace(netloc, "***@" + netloc.rpartition("@")[2], 1)
    return repr(uri if len(uri) <= 300 else uri[:300] + "...")


@dataclass(frozen=True)
class UriFilter:
    """The six lists of ``[import_filtering_opts]``, normalised for matching."""

    allowed_schemes: tuple[str, ...] = ("http", "https")
    disallowed_schemes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    disallowed_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    disallowed_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        norm = object.__setattr__
        norm(self, "allowed_schemes", tuple(s.strip().lower() for s in self.allowed_schemes))
        norm(self, "disallowed_schemes", tuple(s.strip().lower() for s in self.disallowed_schemes))
        norm(self, "allowed_hosts", tuple(_list_host(h) for h in self.allowed_hosts))
        norm(self, "disallowed_hosts", tuple(_list_host(h) for h in self.disallowed_hosts))
        norm(self, "allowed_ports", tuple(int(p) for p in self.allowed_ports))
        norm(self, "disallowed_ports", tuple(int(p) for p in self.disallowed_ports))

    @classmethod
    def from_settings(cls, settings: ImportSettings) -> UriFilter:
        return cls(
            allowed_schemes=settings.allowed_schemes,
            disallowed_schemes=settings.disallowed_schemes,
            allowed_hosts=settings.allowed_hosts,
            disallowed_hosts=settings.disallowed_hosts,
            allowed_ports=settings.allowed_ports,
            disallowed_ports=settings.disallowed_ports,
        )


def check_uri(uri: str, f: UriFilter) -> None:
    """Refuse ``uri`` with :class:`InvalidInput` naming the rule, or return."""
    try:
        _check_uri(uri, f)
    except _Refused as exc:
        raise InvalidInput(f"The web-download URI {_shown(uri)} is not allowed: {exc}.") from None


def _check_uri(uri: str, f: UriFilter) -> None:
    if _UNSAFE_CHARS.search(uri):
        _refuse("it contains spaces or control characters")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        _refuse(f"it cannot be parsed ({exc})")
    _check_scheme(parts.scheme, f)
    host, port_text = _split_authority(parts.netloc)
    names = _host_names(host)
    reason = _host_rule(names, f)
    if reason:
        _refuse(f"host {host} {reason}")
    if port_text:
        _check_port(port_text, f)


async def check_resolved(host: str, port: int, f: UriFilter) -> tuple[str, ...]:
    """Resolve ``host`` (off the event loop) and apply the host rules to every address.

    ``host`` is as in the URI (a name, an IPv4 address, or an IPv6 address with or
    without brackets). Returns the addresses, in resolver order, for the caller to
    connect to; raises :class:`InvalidInput` when one is refused or nothing resolves.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        names = _host_names(f"[{bare}]" if ":" in bare else bare)
    except _Refused as exc:
        raise InvalidInput(f"The web-download host {host!r} is not allowed: {exc}.") from None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"Cannot resolve the web-download host {host}: {exc}") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        if address in addresses:
            continue
        addresses.append(address)
        if address in ("0.0.0.0", "::"):
            raise InvalidInput(
                f"The web-download host {host} resolves to {address}, which is not a "
                "usable address."
            )
        addr_names = _address_names(ipaddress.ip_address(address))
        if f.allowed_hosts:
            if names.isdisjoint(f.allowed_hosts) and addr_names.isdisjoint(f.allowed_hosts):
                raise InvalidInput(
                    f"The web-download host {host} resolves to {address}, which is not in "
                    f"{OPTS} allowed_hosts."
                )
        elif not (names | addr_names).isdisjoint(f.disallowed_hosts):
            raise InvalidInput(
                f"The web-download host {host} resolves to {address}, which is in "
                f"{OPTS} disallowed_hosts."
            )
    if not addresses:
        raise InvalidInput(f"Cannot resolve the web-download host {host}: no addresses")
    return tuple(addresses)


# -- the three levels -----------------------------------------------------------


def _check_scheme(scheme: str, f: UriFilter) -> None:
    if not scheme:
        _refuse("it has no scheme")
    if f.allowed_schemes:
        if scheme not in f.allowed_schemes:
            _refuse(
                f"scheme {scheme!r} is not in {OPTS} allowed_schemes "
                f"({', '.join(f.allowed_schemes)})",
            )
    elif scheme in f.disallowed_schemes:
        _refuse(f"scheme {scheme!r} is in {OPTS} disallowed_schemes")


def _host_rule(names: frozenset[str], f: UriFilter) -> str | None:
    if f.allowed_hosts:
        if names.isdisjoint(f.allowed_hosts):
            return f"is not in {OPTS} allowed_hosts"
        return None
    if not names.isdisjoint(f.disallowed_hosts):
        return f"is in {OPTS} disallowed_hosts"
    return None


def _check_port(port_text: str, f: UriFilter) -> None:
    port = int(port_text)
    if f.allowed_ports:
        if port not in f.allowed_ports:
            _refuse(
                f"port {port} is not in {OPTS} allowed_ports "
                f"({', '.join(str(p) for p in f.allowed_ports)}); leave the port out to "
                "use the scheme's default",
            )
    elif port in f.disallowed_ports:
        _refuse(f"port {port} is in {OPTS} disallowed_ports")


# -- parsing --------------------------------------------------------------------


def _split_authority(netloc: str) -> tuple[str, str]:
    """``host`` (IPv6 with its brackets) and the port text ('' when none)."""
    if not netloc:
        _refuse("it has no host")
    if "@" in netloc:
        _refuse("it carries a user name or password before the host (userinfo)")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            _refuse("its IPv6 host has no closing bracket")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            _refuse("there is text after its IPv6 host")
        port_text = rest[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if host in ("", "[]"):
        _refuse("it has no host")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        _refuse(f"its port {port_text!r} is not a number")
    if port_text and not 0 < int(port_text) < 65536:
        _refuse(f"its port {port_text} is out of range")
    return host, port_text


def _host_names(host: str) -> frozenset[str]:
    """The spellings of ``host`` matched against the host lists; refuses bad hosts."""
    if host.startswith("["):
        inner = host[1:-1]
        if "%" in inner:
            _refuse(f"host {host} has an IPv6 zone id")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(inner)
        except ValueError:
            _refuse(f"host {host} is not a valid IPv6 address")
        return _usable(host, address)
    text = host.lower()
    if not text.isascii():
        _refuse(f"host {host} is not ASCII; write it in its xn-- (punycode) form")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) or "%" in text:
            _refuse(f"IPv6 host {host} must be written in brackets")
        return _usable(host, address)
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        _refuse(f"host {host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        _refuse(
            f"host {host} is an IP address in a non-standard encoding; write IPv4 "
            "addresses as four decimal numbers",
        )
    return frozenset({name})


def _usable(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> frozenset[str]:
    if address.is_unspecified:
        _refuse(f"host {host} is the unspecified address")
    return _address_names(address)


def _address_names(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> frozenset[str]:
    names = {str(address)}
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        names.add(str(address.ipv4_mapped))
    return frozenset(names)


def _list_host(entry: str) -> str:
    """A host list entry in the form :func:`_host_names` produces."""
    text = entry.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text[:-1] if text.endswith(".") else text
