"""The one HTTP server of edgeseg: live view, triggers, health, metrics and REST share it.

::

    from edgeseg.server import HttpServer
    server = HttpServer("127.0.0.1:8080", token="s3cret")
    server.add_route("GET", "/hello", handler)   # an aiohttp handler (async def handler(request))
    server.start(); ...; server.close()

See :mod:`edgeseg.server.http` for what it guards against (auth, Host header, timeouts,
bounded connections) and ``docs/reference/station.md`` for the endpoints the station mounts.
"""

from edgeseg.server.http import DEFAULT_ADDR, HttpServer, is_loopback, parse_addr

__all__ = ["DEFAULT_ADDR", "HttpServer", "is_loopback", "parse_addr"]
