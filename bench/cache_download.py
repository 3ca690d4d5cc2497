"""Cached downloads against store downloads, beside the loopback limit of this machine.

Starts two ``glimpse serve`` processes on free loopback ports, each with a file store
in a temporary directory: one without a cache, one with ``image_cache_dir`` set. The
same random image is uploaded to both and downloaded with a minimal HTTP/1.1 socket
client (so the client is not what limits the figures), several times each:

- loopback limit: the same client reading bytes a thread sends with sendfile;
- store download: the server without a cache, the store file in the page cache
  ("warm") and evicted before each download with posix_fadvise ("cold", the store
  read from disk: the nearest this machine gets to a remote store);
- miss: the first download from the cached server (store read + cache fill, verified);
- cache hit: later downloads from the cached server, warm and cold the same way.

The figures are taken in turns (loopback, store, cache, ...) so that a change in the
machine's load affects all alike. Prints throughput (median of the runs) and the
cache's speed-up over the store.
The file store here is a local disk, so the gain is the cold-disk one; against a
remote store (RBD, Swift, S3, HTTP) the store side is the network. Never asserted.

    .venv/bin/python bench/cache_download.py [--mib 512] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
RECV = 4 * MIB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``glimpse serve`` started and stopped by its PID."""

    def __init__(self, workdir: Path, cache: bool) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True)
        self.data_dir = workdir / "data"
        self.cache_dir = workdir / "cache" if cache else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "glimpse-api.conf"
        lines = ["[DEFAULT]\n"]
        if self.cache_dir is not None:
            lines.append(f"image_cache_dir = {self.cache_dir}\n")
            lines.append("image_cache_max_size = 107374182400\n")
        config.write_text("".join(lines))
        self.log = (workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/glimpse"), "serve", "--host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(self.data_dir), "--config-file", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"glimpse serve did not start; see {workdir / 'server.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()

    def upload(self, path: Path) -> str:
        with httpx.Client(base_url=self.url, timeout=600) as client:
            image = client.post("/v2/images", json={
                "name": "bench", "disk_format": "raw", "container_format": "bare"}).json()
            with path.open("rb") as f:
                response = client.put(f"/v2/images/{image['id']}/file", content=f,
                                      headers={"content-type": "application/octet-stream"})
            response.raise_for_status()
        return str(image["id"])

    def store_file(self, image_id: str) -> Path:
        return self.data_dir / "images" / image_id

    def cache_file(self, image_id: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / image_id


def get(port: int, path: str) -> tuple[int, str]:
    """GET with a plain socket; returns the body size and its md5."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed before the headers")
            head += data
        header, body = head.split(b"\r\n\r\n", 1)
        status = header.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise RuntimeError(f"GET {path}: {status.decode()}")
        length = next(int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        md5 = hashlib.md5(body, usedforsecurity=False) if HASH else None
        got = len(body)
        buffer = bytearray(RECV)
        view = memoryview(buffer)
        while got < length:
            n = sock.recv_into(view, RECV)
            if not n:
                raise RuntimeError(f"GET {path}: ended after {got} of {length} bytes")
            if md5 is not None:
                md5.update(view[:n])
            got += n
        return got, md5.hexdigest() if md5 is not None else ""


HASH = False  # the client does not hash during timed runs (it would be the bottleneck)


def loopback_rate(path: Path, repeat: int) -> list[float]:
    """The client's receive loop fed by sendfile: the most this machine's loopback gives."""
    rates = []
    size = path.stat().st_size
    for _ in range(repeat):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def send(listener: socket.socket = listener) -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            with path.open("rb") as f:
                offset = 0
                while offset < size:
                    offset += os.sendfile(conn.fileno(), f.fileno(), offset, size - offset)
            conn.close()

        thread = threading.Thread(target=send)
        thread.start()
        start = time.perf_counter()
        got, _ = get(port, "/")
        rates.append(got / (time.perf_counter() - start))
        thread.join()
        listener.close()
    return rates


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(port: int, image_id: str, repeat: int,
          before: Callable[[], None] | None = None) -> list[float]:
    rates = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        got, _ = get(port, f"/v2/images/{image_id}/file")
        rates.append(got / (time.perf_counter() - start))
    return rates


def main() -> None:
    global HASH
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="image size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="downloads per figure")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="glimpse-cache-bench-"))
    image = workdir / "image.raw"
    block = os.urandom(MIB)
    md5 = hashlib.md5(usedforsecurity=False)
    with image.open("wb") as f:
        for i in range(args.mib):
            chunk = block[i % 251:] + block[: i % 251]  # no two MiB alike
            f.write(chunk)
            md5.update(chunk)
    expected = md5.hexdigest()
    size = args.mib * MIB
    servers: list[Server] = []
    try:
        plain = Server(workdir / "plain", cache=False)
        servers.append(plain)
        cached = Server(workdir / "cached", cache=True)
        servers.append(cached)
        plain_id, cached_id = plain.upload(image), cached.upload(image)

        evict(cached.store_file(cached_id))
        start = time.perf_counter()
        HASH = True
        got, digest = get(cached.port, f"/v2/images/{cached_id}/file")
        HASH = False
        miss = got / (time.perf_counter() - start) / MIB
        if digest != expected:
            raise RuntimeError("the first download returned other bytes")
        deadline = time.monotonic() + 30  # the fill commits just after the last byte
        while not cached.cache_file(cached_id).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the first download did not fill the cache")
            time.sleep(0.05)

        # Interleaved, so a change in the machine's load hits every figure alike.
        loopback: list[float] = []
        store_warm: list[float] = []
        store_cold: list[float] = []
        hit_warm: list[float] = []
        hit_cold: list[float] = []
        for _ in range(args.repeat):
            loopback += loopback_rate(image, 1)
            store_warm += timed(plain.port, plain_id, 1)
            hit_warm += timed(cached.port, cached_id, 1)
            store_cold += timed(plain.port, plain_id, 1,
                                lambda: evict(plain.store_file(plain_id)))
            hit_cold += timed(cached.port, cached_id, 1,
                              lambda: evict(cached.cache_file(cached_id)))
        # Hits must not touch the store: take its file away and download once more.
        cached.store_file(cached_id).rename(cached.store_file(cached_id).with_name("away"))
        HASH = True
        got, digest = get(cached.port, f"/v2/images/{cached_id}/file")
        HASH = False
        served_without_store = got == size and digest == expected
    finally:
        for server in servers:
            server.stop()
        if os.environ.get("KEEP"):
            print("kept", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def mibs(rates: list[float]) -> float:
        return statistics.median(rates) / MIB

    limit = mibs(loopback)
    rows = [
        ("loopback limit (sendfile -> same client)", mibs(loopback), ""),
        ("store download, page cache warm", mibs(store_warm), ""),
        ("store download, cold (evicted each time)", mibs(store_cold), ""),
        ("first download: store read + cache fill", miss, "(one run, md5-checked)"),
        ("cache hit, warm", mibs(hit_warm),
         f"{mibs(hit_warm) / mibs(store_warm):.2f} x store warm"),
        ("cache hit, cold (evicted each time)", mibs(hit_cold),
         f"{mibs(hit_cold) / mibs(store_cold):.2f} x store cold"),
    ]
    print(f"glimpse cache download benchmark: {args.mib} MiB image, median of "
          f"{args.repeat} runs, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{'figure':45} {'MiB/s':>9} {'x loopback':>11}  speed-up")
    for name, rate, note in rows:
        print(f"{name:45} {rate:9,.0f} {rate / limit:11.2f}  {note}")
    print(f"cache hit served with the store file gone: {'yes' if served_without_store else 'NO'}")


if __name__ == "__main__":
    main()
