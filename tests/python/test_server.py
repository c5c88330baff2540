"""The one HTTP server (edgeseg.server.HttpServer) against real clients and raw sockets on
127.0.0.1: token, Host check, slow and idle clients, malformed requests, bounded connections,
TLS."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

pytest.importorskip("aiohttp")

from aiohttp import web  # noqa: E402

from edgeseg.errors import ServerError  # noqa: E402
from edgeseg.server import HttpServer  # noqa: E402
from edgeseg.server.http import read_body  # noqa: E402

TOKEN = "s3cret-token"
TIMEOUT = 20.0


def make_server(**kw) -> HttpServer:
    kw.setdefault("token", TOKEN)
    s = HttpServer("127.0.0.1:0", **kw)

    async def hello(request):
        return web.Response(text="hello")

    async def echo(request):
        body = await read_body(request, 1024, s.request_timeout)
        return web.Response(body=body[::-1])

    s.add_route("GET", "/hello", hello)
    s.add_route("GET", "/healthz", hello, auth=False)
    s.add_route("POST", "/echo", echo)
    return s


@pytest.fixture
def server():
    s = make_server(request_timeout=1.0, idle_timeout=2.0, max_connections=32)
    s.start()
    yield s
    s.close()


def request(port: int, method: str, path: str, headers=None, body=None, tls=None):
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def raw(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(data)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out


def test_token_on_every_route_but_healthz(server):
    assert request(server.port, "GET", "/healthz")[0] == 200
    status, headers, body = request(server.port, "GET", "/hello")
    assert status == 401 and b"token" in body and "Bearer" in headers["WWW-Authenticate"]
    assert request(server.port, "GET", "/hello?token=wrong")[0] == 401
    assert request(server.port, "GET", "/hello", {"Authorization": "Bearer nope"})[0] == 401
    assert request(server.port, "GET", f"/hello?token={TOKEN}")[2] == b"hello"
    assert request(server.port, "GET", "/hello", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(server.port, "GET", "/hello", {"X-Edgeseg-Token": TOKEN})[0] == 200
    status, headers, _ = request(server.port, "GET", "/hello")
    assert TOKEN not in str(headers)
    assert server.counts["unauthorized"] >= 4


def test_host_header_check():
    s = make_server(token=None, allowed_hosts=["line3.example"])
    with s:
        ok = {"Host": f"localhost:{s.port}"}
        assert request(s.port, "GET", "/hello", ok)[0] == 200
        assert request(s.port, "GET", "/hello", {"Host": f"127.0.0.1:{s.port}"})[0] == 200
        assert request(s.port, "GET", "/hello", {"Host": "line3.example"})[0] == 200
        status, _, body = request(s.port, "GET", "/hello", {"Host": "attacker.example:80"})
        assert status == 421 and b"allowed_hosts" in body
        assert request(s.port, "GET", "/healthz", {"Host": "rebound.example"})[0] == 421
        assert s.counts["bad_host"] == 2


def test_partial_body_times_out_with_408(server):
    t0 = time.monotonic()
    s = raw(
        server.port,
        b"POST /echo?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 100\r\n\r\nonly-a-part",
    )
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - t0 < TIMEOUT  # answered and closed, not held


def test_partial_head_times_out_and_closes(server):
    s = raw(server.port, b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    answer = read_all(s)  # the server closes it; a hang would time the test out
    s.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert server.counts["timeouts"] >= 1


@pytest.mark.parametrize("length", [b"abc", b"-5", b"99999999999999999999999"])
def test_bad_content_length_is_400_not_a_traceback(server, length):
    s = raw(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: "
        + length
        + b"\r\n\r\nxyz",
    )
    answer = read_all(s)
    s.close()
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.0 400 Bad Request")
    assert b"Traceback" not in answer
    assert request(server.port, "GET", "/healthz")[0] == 200  # the server goes on


def test_body_limit_is_413(server):
    status, _, body = request(
        server.port, "POST", "/echo", {"Authorization": f"Bearer {TOKEN}"}, b"x" * 5000
    )
    assert status == 413 and b"1024" in body
    status, _, body = request(
        server.port, "POST", "/echo", {"Authorization": f"Bearer {TOKEN}"}, b"abc"
    )
    assert (status, body) == (200, b"cba")


def test_many_idle_sockets_do_not_block_a_request_or_take_threads(server):
    threads_before = threading.active_count()
    idle = [
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) for _ in range(300)
    ]
    try:
        status, _, body = request(server.port, "GET", f"/hello?token={TOKEN}")
        assert (status, body) == (200, b"hello")
        assert server.connections <= server.max_connections
        assert server.counts["evicted"] >= 300 - server.max_connections
        assert threading.active_count() <= threads_before + server.workers
    finally:
        for s in idle:
            s.close()


def test_idle_keepalive_connection_is_closed(server):
    s = raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    t0 = time.monotonic()
    answer = read_all(s)  # the answer, then EOF once idle_timeout (2 s) passed
    s.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert 1.0 < time.monotonic() - t0 < TIMEOUT


def test_non_loopback_bind_needs_a_token_and_bad_settings_are_named():
    with pytest.raises(ServerError, match="0.0.0.0.*needs a token.*127.0.0.1"):
        HttpServer("0.0.0.0:0")
    with pytest.raises(ServerError, match="empty"):
        HttpServer("127.0.0.1:0", token=" ")
    with pytest.raises(ServerError, match="both a certificate and a key"):
        HttpServer("127.0.0.1:0", tls_cert="c.pem")
    with pytest.raises(ServerError, match="no such file"):
        HttpServer(
            "127.0.0.1:0", tls_cert="/nonexistent/c.pem", tls_key="/nonexistent/k.pem"
        ).start()
    with make_server() as first:
        with pytest.raises(ServerError, match=f"port {first.port} on 127.0.0.1 is in use"):
            HttpServer(f"127.0.0.1:{first.port}").start()
    s = HttpServer("0.0.0.0:0", token=TOKEN)
    with s:
        assert s.url == f"http://127.0.0.1:{s.port}/"
        assert request(s.port, "GET", "/nope")[0] == 401  # unknown paths need the token too


def test_close_leaves_no_thread_and_frees_the_port():
    before = set(threading.enumerate())
    s = make_server()
    s.start()
    keep = raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s.close()
    read_all(keep)
    keep.close()
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT).close()
    s.close()  # twice is fine


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_from_cert_and_key_files(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with make_server(tls_cert=str(cert), tls_key=str(key)) as s:
        assert s.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        status, _, body = request(s.port, "GET", f"/hello?token={TOKEN}", tls=ctx)
        assert (status, body) == (200, b"hello")
        with pytest.raises(ssl.SSLError):
            request(s.port, "GET", "/hello", tls=ssl.create_default_context())  # untrusted
    with pytest.raises(ServerError, match="cannot load the TLS certificate"):
        HttpServer("127.0.0.1:0", tls_cert=str(cert), tls_key=str(cert)).start()
