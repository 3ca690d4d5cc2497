"""web-download against real HTTP servers on loopback (``http.server`` in threads).

Two servers: ``source`` on 127.0.0.1 and ``other`` on 127.0.0.2 (all of 127/8 is
loopback on Linux), so a redirect can point at a place the filter forbids, and the
test can see that the forbidden place was never asked.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glimpse.domain.errors import InvalidImageData, InvalidInput, RequestTooLarge
from glimpse.image_import.uri_filter import UriFilter
from glimpse.image_import.web_download import download_to

MiB = 1024 * 1024
PAYLOAD = os.urandom(5 * MiB + 123)


@dataclass
class Server:
    host: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Host", "")))
            route, _, arg = self.path.lstrip("/").partition("/")
            getattr(self, "route_" + route.replace("-", "_"))(arg)

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def route_file(self, arg: str) -> None:
            size = int(arg) if arg else len(PAYLOAD)
            self._head(200, {"Content-Length": str(size)})
            self.wfile.write(PAYLOAD[:size])

        def route_empty(self, arg: str) -> None:
            self._head(200, {"Content-Length": "0"})

        def route_redirect(self, arg: str) -> None:
            # /redirect/<status>/<location...>
            status, _, location = arg.partition("/")
            self._head(int(status), {"Location": location, "Content-Length": "0"})

        def route_chain(self, arg: str) -> None:
            hops = int(arg)
            target = "/file/1000" if hops == 0 else f"/chain/{hops - 1}"
            self._head(302, {"Location": target, "Content-Length": "0"})

        def route_status(self, arg: str) -> None:
            self._head(int(arg), {"Content-Length": "2"})
            self.wfile.write(b"no")

        def route_short(self, arg: str) -> None:
            # announces a megabyte, sends half, hangs up
            self._head(200, {"Content-Length": str(MiB)})
            self.wfile.write(PAYLOAD[: MiB // 2])
            self.wfile.flush()
            self.close_connection = True

        def route_chunked_short(self, arg: str) -> None:
            self._head(200, {"Transfer-Encoding": "chunked"})
            self.wfile.write(b"%x\r\n%s\r\n" % (1000, PAYLOAD[:1000]))
            self.wfile.flush()
            self.close_connection = True  # no terminating zero-size chunk

        def route_endless(self, arg: str) -> None:
            # no Content-Length: the cap must stop it while streaming
            self._head(200, {"Connection": "close"})
            block = bytes(64 * 1024)
            try:
                for _ in range(10_000):  # 640 MiB if nobody stops reading
                    self.wfile.write(block)
            except OSError:
                pass
            self.close_connection = True

        def route_declared_big(self, arg: str) -> None:
            self._head(200, {"Content-Length": str(10 * MiB)})
            try:
                self.wfile.write(PAYLOAD[:MiB])
            except OSError:
                pass
            self.close_connection = True

        def route_slow(self, arg: str) -> None:
            # some data, then silence longer than the test's timeout
            self._head(200, {"Content-Length": "2000"})
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            time.sleep(3)
            self.close_connection = True

        def route_slow_headers(self, arg: str) -> None:
            time.sleep(3)
            self.close_connection = True

        def route_encoded(self, arg: str) -> None:
            # gzip-encoded body: stored as sent, never decoded
            body = b"\x1f\x8b\x08" + bytes(100)
            self._head(200, {"Content-Length": str(len(body)), "Content-Encoding": "gzip"})
            self.wfile.write(body)

    return Handler


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    running: list[ThreadingHTTPServer] = []

    def start(host: str, tls: ssl.SSLContext | None = None) -> Server:
        info = Server(host=f"[{host}]" if ":" in host else host, port=0)
        server_class = _ThreadingHTTPServer6 if ":" in host else ThreadingHTTPServer
        httpd = server_class((host, 0), _handler(info))
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        info.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        running.append(httpd)
        return info

    yield start
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def source(start_server: Callable[[str], Server]) -> Server:
    return start_server("127.0.0.1")


@pytest.fixture
def other(start_server: Callable[[str], Server]) -> Server:
    return start_server("127.0.0.2")


OPEN = UriFilter(allowed_ports=())  # http/https, any host, any port


async def fetch(
    uri: str,
    dest: Path,
    *,
    f: UriFilter = OPEN,
    size_cap: int = 64 * MiB,
    stall: float = 5,
    max_redirects: int = 5,
) -> int:
    return await download_to(
        uri, dest, uri_filter=f, size_cap=size_cap, timeout=stall, max_redirects=max_redirects
    )


# -- success -------------------------------------------------------------------------


async def test_streams_the_body_to_a_new_file(source: Server, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    assert await fetch(source.url("/file/"), dest) == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD


async def test_empty_body(source: Server, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    assert await fetch(source.url("/empty/"), dest) == 0
    assert dest.read_bytes() == b""


async def test_connects_to_the_checked_address_with_the_name_as_host(
    source: Server, tmp_path: Path
) -> None:
    uri = f"http://localhost:{source.port}/file/100"
    assert await fetch(uri, tmp_path / "staged") == 100
    assert source.requests == [("/file/100", f"localhost:{source.port}")]


async def test_ipv6_literal_in_any_spelling(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    try:
        server = start_server("::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    for i, host in enumerate(["[::1]", "[0:0::1]", "[0000:0000:0000:0000:0000:0000:0000:0001]"]):
        uri = f"http://{host}:{server.port}/file/10"
        assert await fetch(uri, tmp_path / f"staged{i}") == 10
    f = UriFilter(allowed_ports=(), disallowed_hosts=("::1",))
    with pytest.raises(InvalidInput, match="disallowed_hosts"):
        await fetch(f"http://[0:0::1]:{server.port}/file/10", tmp_path / "refused", f=f)
    assert len(server.requests) == 3


async def test_punycode_host_is_resolved_as_written(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="Cannot resolve the web-download host xn--bcher-kva"):
        await fetch("http://xn--bcher-kva.invalid/image", tmp_path / "staged")


async def test_follows_allowed_redirects_absolute_and_relative(
    source: Server, other: Server, tmp_path: Path
) -> None:
    hop = source.url("/redirect/301/" + other.url("/redirect/307//file/4096"))
    assert await fetch(hop, tmp_path / "staged") == 4096
    assert (tmp_path / "staged").read_bytes() == PAYLOAD[:4096]
    assert other.paths == ["/redirect/307//file/4096", "/file/4096"]


async def test_redirect_chain_up_to_the_limit(source: Server, tmp_path: Path) -> None:
    assert await fetch(source.url("/chain/3"), tmp_path / "a", max_redirects=4) == 1000
    with pytest.raises(InvalidInput, match="redirected more than 3 times"):
        await fetch(source.url("/chain/3"), tmp_path / "b", max_redirects=3)
    assert not (tmp_path / "b").exists()


async def test_content_encoding_is_stored_as_sent(source: Server, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    assert await fetch(source.url("/encoded/"), dest) == 103
    assert dest.read_bytes() == b"\x1f\x8b\x08" + bytes(100)


# -- refusals ---------------------------------------------------------------------------


async def test_refused_uri_is_never_requested(source: Server, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="port .* is not in .*allowed_ports"):
        await fetch(source.url("/file/"), tmp_path / "staged", f=UriFilter())
    assert source.requests == []
    assert not (tmp_path / "staged").exists()


async def test_redirect_to_a_disallowed_host_is_refused_before_it_is_asked(
    source: Server, other: Server, tmp_path: Path
) -> None:
    f = UriFilter(allowed_ports=(), disallowed_hosts=("127.0.0.2",))
    with pytest.raises(InvalidInput, match="host 127.0.0.2 is in .*disallowed_hosts"):
        await fetch(source.url("/redirect/302/" + other.url("/file/")), tmp_path / "staged", f=f)
    assert other.requests == []
    assert not (tmp_path / "staged").exists()


async def test_redirect_to_a_name_resolving_to_a_disallowed_address_is_refused(
    source: Server, other: Server, tmp_path: Path
) -> None:
    f = UriFilter(allowed_ports=(), disallowed_hosts=("127.0.0.1",))
    target = f"http://localhost:{source.port}/file/"
    with pytest.raises(InvalidInput, match="localhost resolves to 127.0.0.1, which is in"):
        await fetch(other.url("/redirect/302/" + target), tmp_path / "staged", f=f)
    assert other.paths == ["/redirect/302/" + target]
    assert source.requests == []


async def test_a_uri_naming_a_disallowed_address_is_refused(source: Server, tmp_path: Path) -> None:
    f = UriFilter(allowed_ports=(), disallowed_hosts=("127.0.0.1",))
    with pytest.raises(InvalidInput, match="resolves to 127.0.0.1"):
        await fetch(f"http://localhost:{source.port}/file/", tmp_path / "staged", f=f)
    with pytest.raises(InvalidInput, match="disallowed_hosts"):
        await fetch(source.url("/file/"), tmp_path / "staged", f=f)
    assert source.requests == []


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("file:///etc/passwd", "scheme 'file' is not in"),
        ("http://user:pw@127.0.0.2/file/", "userinfo"),
        ("http://2130706433/file/", "non-standard encoding"),
        ("http://127.0.0.1:1/file/", "port 1 is not in"),
    ],
)
async def test_redirects_to_forbidden_places_are_refused(
    source: Server, tmp_path: Path, location: str, why: str
) -> None:
    f = UriFilter(allowed_ports=(source.port,))
    with pytest.raises(InvalidInput, match=why):
        await fetch(source.url("/redirect/302/" + location), tmp_path / "staged", f=f)
    assert not (tmp_path / "staged").exists()


async def test_redirect_to_an_allowed_scheme_web_download_cannot_fetch(
    source: Server, tmp_path: Path
) -> None:
    f = UriFilter(allowed_schemes=("http", "ftp"), allowed_ports=())
    with pytest.raises(InvalidInput, match="fetches http and https only"):
        await fetch(source.url("/redirect/302/ftp://example.org/x"), tmp_path / "staged", f=f)


@pytest.mark.parametrize("status", [404, 403, 500, 503])
async def test_non_2xx_is_refused_with_the_status(
    source: Server, tmp_path: Path, status: int
) -> None:
    with pytest.raises(InvalidInput, match=f"answered {status}"):
        await fetch(source.url(f"/status/{status}"), tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


async def test_redirect_without_location_is_not_followed(source: Server, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="answered 302"):
        await fetch(source.url("/status/302"), tmp_path / "staged")


async def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening
        with pytest.raises(InvalidInput, match="Cannot connect"):
            await fetch(f"http://127.0.0.1:{port}/x", tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


# -- broken sources ------------------------------------------------------------------------


async def test_source_that_stops_mid_stream(source: Server, tmp_path: Path) -> None:
    with pytest.raises(InvalidImageData, match="stopped after"):
        await fetch(source.url("/short/"), tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


async def test_chunked_source_that_stops_mid_stream(source: Server, tmp_path: Path) -> None:
    with pytest.raises(InvalidImageData, match="stopped after"):
        await fetch(source.url("/chunked-short/"), tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


async def test_source_larger_than_the_cap_while_streaming(source: Server, tmp_path: Path) -> None:
    with pytest.raises(RequestTooLarge, match="more than the image size cap of 3145728"):
        await fetch(source.url("/endless/"), tmp_path / "staged", size_cap=3 * MiB)
    assert not (tmp_path / "staged").exists()


async def test_source_announcing_more_than_the_cap(source: Server, tmp_path: Path) -> None:
    with pytest.raises(RequestTooLarge, match="is 10485760 bytes, more than"):
        await fetch(source.url("/declared-big/"), tmp_path / "staged", size_cap=2 * MiB)
    assert not (tmp_path / "staged").exists()


async def test_exactly_the_cap_is_accepted(source: Server, tmp_path: Path) -> None:
    assert await fetch(source.url("/file/4096"), tmp_path / "staged", size_cap=4096) == 4096
    with pytest.raises(RequestTooLarge):
        await fetch(source.url("/file/4097"), tmp_path / "other", size_cap=4096)


async def test_slow_source_times_out(source: Server, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidImageData, match="sent no data for 0.5 seconds after 1000 bytes"):
        await fetch(source.url("/slow/"), tmp_path / "staged", stall=0.5)
    assert time.monotonic() - started < 2.5
    assert not (tmp_path / "staged").exists()


async def test_source_that_never_answers_times_out(source: Server, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="did not answer within 0.5 seconds"):
        await fetch(source.url("/slow-headers/"), tmp_path / "staged", stall=0.5)
    assert not (tmp_path / "staged").exists()


async def test_existing_destination_is_left_alone(source: Server, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    dest.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        await fetch(source.url("/file/"), dest)
    assert dest.read_bytes() == b"keep me"
    assert source.requests == []


async def test_cancelled_download_removes_the_partial_file(source: Server, tmp_path: Path) -> None:
    dest = tmp_path / "staged"
    task = asyncio.create_task(fetch(source.url("/slow/"), dest, stall=30))
    for _ in range(100):
        if dest.exists() and source.requests:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not dest.exists()


# -- https: the connection goes to the checked address, the name is still verified ------------


@dataclass
class Pki:
    ca: Path
    contexts: dict[str, ssl.SSLContext]  # server contexts by the name in their certificate
    sni: list[str | None]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def name(text: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("glimpse test CA"))
        .issuer_name(name("glimpse test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca = directory / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(pem))
    sni: list[str | None] = []
    contexts = {}
    for dns in ("localhost", "elsewhere.example"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(dns))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = directory / f"{dns}.pem"
        chain.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            + cert.public_bytes(pem)
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain)
        context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)  # type: ignore[assignment,misc]
        contexts[dns] = context
    return Pki(ca=ca, contexts=contexts, sni=sni)


async def test_https_by_name_sends_sni_and_verifies_the_name(
    start_server: Callable[..., Server],
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    server = start_server("127.0.0.1", pki.contexts["localhost"])
    pki.sni.clear()
    uri = f"https://localhost:{server.port}/file/5000"
    assert await fetch(uri, tmp_path / "staged") == 5000
    assert (tmp_path / "staged").read_bytes() == PAYLOAD[:5000]
    assert pki.sni == ["localhost"]
    assert server.requests == [("/file/5000", f"localhost:{server.port}")]


async def test_https_certificate_for_another_name_is_refused(
    start_server: Callable[..., Server],
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    server = start_server("127.0.0.1", pki.contexts["elsewhere.example"])
    with pytest.raises(InvalidInput, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await fetch(f"https://localhost:{server.port}/file/", tmp_path / "staged")
    assert server.requests == []
    assert not (tmp_path / "staged").exists()


async def test_https_with_an_untrusted_issuer_is_refused(
    start_server: Callable[..., Server], pki: Pki, tmp_path: Path
) -> None:
    server = start_server("127.0.0.1", pki.contexts["localhost"])
    with pytest.raises(InvalidInput, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await fetch(f"https://localhost:{server.port}/file/", tmp_path / "staged")
    assert server.requests == []
