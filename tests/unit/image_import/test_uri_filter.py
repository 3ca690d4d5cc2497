"""The web-download URI filter: guide 4.2's decision logic, its examples, and spellings
of hosts that must not slip past a list entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.config import ImportSettings, load_settings
from glimpse.domain.errors import InvalidInput
from glimpse.image_import.uri_filter import UriFilter, check_resolved, check_uri

DEFAULTS = UriFilter()


def allowed(uri: str, f: UriFilter = DEFAULTS) -> bool:
    try:
        check_uri(uri, f)
    except InvalidInput:
        return False
    return True


def refusal(uri: str, f: UriFilter = DEFAULTS) -> str:
    with pytest.raises(InvalidInput) as info:
        check_uri(uri, f)
    return info.value.message


# -- guide 4.2.2: the defaults -------------------------------------------------------


def test_defaults_match_the_guide_and_the_config() -> None:
    assert DEFAULTS == UriFilter(
        allowed_schemes=("http", "https"),
        disallowed_schemes=(),
        allowed_hosts=(),
        disallowed_hosts=(),
        allowed_ports=(80, 443),
        disallowed_ports=(),
    )
    assert UriFilter.from_settings(ImportSettings()) == DEFAULTS
    assert UriFilter.from_settings(load_settings([], {}).imports) == DEFAULTS


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.org/image.qcow2",
        "https://example.org/image.qcow2",
        "http://example.org:80/image.qcow2",
        "https://example.org:443/image.qcow2",
        "http://example.org:443/image.qcow2",
        "HTTP://Example.ORG/image.qcow2",
        "http://192.0.2.10/image.raw",
        "http://[2001:db8::1]/image.raw",
        "http://[2001:db8::1]:443/image.raw",
        "http://server/image.qcow2",  # the guide's own example, 3.4.3
    ],
)
def test_defaults_allow_http_and_https_with_no_port_or_80_or_443(uri: str) -> None:
    assert allowed(uri)


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        (
            "ftp://example.org/image.qcow2",
            "scheme 'ftp' is not in [import_filtering_opts] allowed_schemes (http, https)",
        ),
        ("file:///etc/passwd", "scheme 'file' is not in"),
        (
            "http://example.org:8080/image.qcow2",
            "port 8080 is not in [import_filtering_opts] allowed_ports (80, 443)",
        ),
        ("https://example.org:8443/image.qcow2", "port 8443 is not in"),
        ("example.org/image.qcow2", "it has no scheme"),
        ("//example.org/image.qcow2", "it has no scheme"),
        ("http:///image.qcow2", "it has no host"),
        ("http://:80/image.qcow2", "it has no host"),
        ("http://[]/image.qcow2", "cannot be parsed"),
    ],
)
def test_defaults_refuse_with_the_rule_named(uri: str, rule: str) -> None:
    assert rule in refusal(uri)


# -- guide 4.2.1: the allowlist example -----------------------------------------------


def test_guide_allowlist_example_ftp_without_port_is_allowed_with_21_refused() -> None:
    f = UriFilter(
        allowed_schemes=("http", "https", "ftp"),
        disallowed_schemes=(),
        allowed_hosts=(),
        disallowed_hosts=(),
        allowed_ports=(80, 443),
        disallowed_ports=(),
    )
    assert allowed("ftp://example.org/some/resource", f)
    assert "port 21 is not in [import_filtering_opts] allowed_ports" in refusal(
        "ftp://example.org:21/some/resource", f
    )


def test_guide_example_written_as_in_the_guide_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "glance-image-import.conf"
    conf.write_text(
        "[import_filtering_opts]\n"
        "allowed_schemes = [http,https,ftp]\n"
        "disallowed_schemes = []\n"
        "allowed_hosts = []\n"
        "disallowed_hosts = []\n"
        "allowed_ports = [80,443]\n"
        "disallowed_ports = []\n"
    )
    f = UriFilter.from_settings(load_settings([str(conf)], {}).imports)
    assert f.allowed_schemes == ("http", "https", "ftp")
    assert f.allowed_ports == (80, 443)
    assert allowed("ftp://example.org/some/resource", f)
    assert not allowed("ftp://example.org:21/some/resource", f)


# -- each level: allowlist honoured over blocklist ------------------------------------


def test_scheme_allowlist_is_honoured_over_the_blocklist() -> None:
    f = UriFilter(allowed_schemes=("https",), disallowed_schemes=("https", "http"))
    assert allowed("https://example.org/", f)  # in both: the blocklist is ignored
    assert "scheme 'http' is not in [import_filtering_opts] allowed_schemes" in refusal(
        "http://example.org/", f
    )


def test_scheme_blocklist_applies_without_an_allowlist() -> None:
    f = UriFilter(allowed_schemes=(), disallowed_schemes=("http",), allowed_ports=())
    assert "scheme 'http' is in [import_filtering_opts] disallowed_schemes" in refusal(
        "http://example.org/", f
    )
    assert allowed("https://example.org/", f)
    assert allowed("ftp://example.org/", f)


def test_host_allowlist_is_honoured_over_the_blocklist() -> None:
    f = UriFilter(allowed_hosts=("images.example.org",), disallowed_hosts=("images.example.org",))
    assert allowed("http://images.example.org/x", f)
    assert "host other.example.org is not in [import_filtering_opts] allowed_hosts" in refusal(
        "http://other.example.org/x", f
    )


def test_host_blocklist_applies_without_an_allowlist() -> None:
    f = UriFilter(disallowed_hosts=("evil.example.org", "169.254.169.254", "::1"))
    assert "host evil.example.org is in [import_filtering_opts] disallowed_hosts" in refusal(
        "http://evil.example.org/x", f
    )
    assert "disallowed_hosts" in refusal("http://169.254.169.254/latest/meta-data", f)
    assert "disallowed_hosts" in refusal("http://[::1]/x", f)
    assert allowed("http://good.example.org/x", f)


def test_port_allowlist_is_honoured_over_the_blocklist() -> None:
    f = UriFilter(allowed_ports=(8080,), disallowed_ports=(8080, 80))
    assert allowed("http://example.org:8080/", f)
    assert "port 80 is not in [import_filtering_opts] allowed_ports (8080)" in refusal(
        "http://example.org:80/", f
    )


def test_port_blocklist_applies_without_an_allowlist() -> None:
    f = UriFilter(allowed_ports=(), disallowed_ports=(22, 25))
    assert "port 22 is in [import_filtering_opts] disallowed_ports" in refusal(
        "http://example.org:22/", f
    )
    assert allowed("http://example.org:8080/", f)


def test_no_port_is_allowed_whatever_the_port_lists_say() -> None:
    assert allowed("http://example.org/", UriFilter(allowed_ports=(8080,)))
    assert allowed("https://example.org/", UriFilter(allowed_ports=(), disallowed_ports=(443,)))
    assert allowed("https://example.org:/", UriFilter(allowed_ports=(8080,)))  # empty port


def test_levels_are_checked_in_order_scheme_host_port() -> None:
    f = UriFilter(allowed_hosts=("good.example.org",))
    assert "scheme" in refusal("ftp://bad.example.org:99/", f)
    assert "host" in refusal("http://bad.example.org:99/", f)
    assert "port 99" in refusal("http://good.example.org:99/", f)


def test_empty_lists_everywhere_allow_any_scheme_host_and_port() -> None:
    f = UriFilter(allowed_schemes=(), allowed_ports=())
    assert allowed("gopher://example.org:70/", f)


# -- host matching --------------------------------------------------------------------


def test_host_entries_match_case_trailing_dot_brackets_and_ip_spellings() -> None:
    f = UriFilter(disallowed_hosts=("Evil.Example.ORG.", "[2001:DB8:0:0::1]", "10.0.0.1"))
    assert not allowed("http://evil.example.org/", f)
    assert not allowed("http://EVIL.example.org./", f)
    assert not allowed("http://[2001:db8::1]/", f)
    assert not allowed("http://[2001:0db8:0000::0001]/", f)
    assert not allowed("http://[::ffff:10.0.0.1]/", f)  # IPv4-mapped form of an entry
    assert not allowed("http://[::ffff:a00:1]/", f)


def test_ipv4_mapped_address_satisfies_an_ipv4_allowlist_entry() -> None:
    f = UriFilter(allowed_hosts=("192.0.2.7",))
    assert allowed("http://[::ffff:192.0.2.7]/", f)
    assert allowed("http://192.0.2.7/", f)
    assert not allowed("http://192.0.2.8/", f)


# -- spellings that are refused outright ---------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "http://2130706433/",  # decimal
        "http://017700000001/",  # octal
        "http://0x7f000001/",  # hex
        "http://0x7f.1/",
        "http://0x7F.0.0.1/",
        "http://0177.0.0.1/",  # leading zeros: octal to inet_aton
        "http://127.000.000.001/",
        "http://127.1/",  # shortened
        "http://10.1/",
        "http://127.0.1/",
        "http://127.0.0.1.1/",  # five numbers
        "http://1.2.3.256/",
        "http://example.0x7f/",  # a name ending in a number parses as IPv4 (WHATWG)
        "http://foo.123/",
    ],
)
def test_non_standard_ip_encodings_are_refused(uri: str) -> None:
    assert "non-standard encoding" in refusal(uri, UriFilter(disallowed_hosts=("127.0.0.1",)))


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://user@example.org/", "userinfo"),
        ("http://user:secret@example.org/", "userinfo"),
        ("http://allowed.example.org@127.0.0.1/", "userinfo"),
        ("http://allowed.example.org:80@127.0.0.1/", "userinfo"),
        ("http://allowed.example.org\\@127.0.0.1/", "userinfo"),
        ("http://@example.org/", "userinfo"),
        ("http://exa mple.org/", "spaces or control characters"),
        ("http://example.org\t/", "spaces or control characters"),
        ("http://example.org\n.evil/", "spaces or control characters"),
        ("http://%31%32%37.0.0.1/", "not a valid host name"),
        ("http://example..org/", "not a valid host name"),
        ("http://-example.org/", "not a valid host name"),
        ("http://exa$mple.org/", "not a valid host name"),
        ("http://ex\\ample.org/", "not a valid host name"),
        ("http://bücher.example/", "not ASCII"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://[::1/", "cannot be parsed"),
        ("http://[zz::1]/", "cannot be parsed"),
        ("http://[::1]x/", "text after its IPv6 host"),
        ("http://0.0.0.0/", "unspecified address"),
        ("http://[::]/", "unspecified address"),
        ("http://example.org:http/", "is not a number"),
        ("http://example.org:+80/", "is not a number"),
        ("http://example.org:0/", "out of range"),
        ("http://example.org:65536/", "out of range"),
        ("http://example.org:80:80/", "is not a number"),
    ],
)
def test_tricky_authorities_are_refused(uri: str, why: str) -> None:
    assert why in refusal(uri, UriFilter(allowed_schemes=(), allowed_ports=()))


def test_messages_never_repeat_a_password() -> None:
    message = refusal("http://user:hunter2@example.org/")
    assert "hunter2" not in message
    assert "***@example.org" in message


def test_ipv6_hosts() -> None:
    assert allowed("http://[::1]/")
    assert allowed("https://[2001:db8::42]:443/image")
    assert not allowed("http://[2001:db8::42]:8080/image")
    f = UriFilter(allowed_hosts=("2001:db8::42",))
    assert allowed("http://[2001:DB8::42]/", f)
    assert not allowed("http://[2001:db8::43]/", f)


# -- resolved addresses ----------------------------------------------------------------


async def test_a_name_resolving_to_a_disallowed_address_is_refused() -> None:
    f = UriFilter(disallowed_hosts=("127.0.0.1",))
    check_uri("http://localhost/", f)  # the name itself is not listed
    with pytest.raises(InvalidInput, match="resolves to 127.0.0.1, which is in"):
        await check_resolved("localhost", 80, f)


async def test_a_literal_disallowed_address_is_refused_at_resolution_too() -> None:
    f = UriFilter(disallowed_hosts=("127.0.0.1", "::1"))
    with pytest.raises(InvalidInput, match="disallowed_hosts"):
        await check_resolved("127.0.0.1", 80, f)
    with pytest.raises(InvalidInput, match="disallowed_hosts"):
        await check_resolved("[::1]", 80, f)
    with pytest.raises(InvalidInput, match="disallowed_hosts"):
        await check_resolved("::1", 80, f)


async def test_resolved_addresses_are_returned_when_allowed() -> None:
    assert await check_resolved("127.0.0.1", 80, DEFAULTS) == ("127.0.0.1",)
    assert await check_resolved("[::1]", 80, DEFAULTS) == ("::1",)
    assert "127.0.0.1" in await check_resolved("localhost", 80, DEFAULTS)


async def test_allowlist_by_address_covers_resolution_and_by_name_trusts_the_name() -> None:
    by_address = UriFilter(allowed_hosts=("localhost", "127.0.0.1", "::1"))
    assert "127.0.0.1" in await check_resolved("localhost", 80, by_address)
    by_name = UriFilter(allowed_hosts=("localhost",))
    assert "127.0.0.1" in await check_resolved("localhost", 80, by_name)
    other = UriFilter(allowed_hosts=("images.example.org",))
    with pytest.raises(InvalidInput, match="not in \\[import_filtering_opts\\] allowed_hosts"):
        await check_resolved("127.0.0.1", 80, other)


async def test_encoded_hosts_are_refused_before_resolving() -> None:
    with pytest.raises(InvalidInput, match="non-standard encoding"):
        await check_resolved("2130706433", 80, DEFAULTS)
    with pytest.raises(InvalidInput, match="non-standard encoding"):
        await check_resolved("0x7f.1", 80, DEFAULTS)


async def test_unresolvable_name_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="Cannot resolve the web-download host"):
        await check_resolved("no-such-host.invalid", 80, DEFAULTS)
