"""A tiny HTTP server on 127.0.0.1 for download tests: serves bytes, honours Range, misbehaves on request.

    with LocalServer({"/good.tar": data, "/evil.zip": Route(html, content_type="text/html")}) as server:
        url = server.url("/good.tar")

A path maps to bytes (served well) or to a :class:`Route` that says how to misbehave: a wrong or
missing ``Content-Length``, a body cut off after some bytes (once or every time), bytes trickled
slowly, an endless body, Range requests ignored. ``truncate_once`` paths send their full
``Content-Length`` but only half the body on the first request, like a flaky network.
``server.requests`` records ``(path, Range header or None)`` of every request.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDLESS_SAFETY_CAP = 256 << 20  # an endless body stops here even if the client never hangs up


@dataclass
class Route:
    """How one path is served.

    Attributes:
        body: the file's bytes.
        status: the status of a full (non-Range) response.
        content_type: the ``Content-Type`` header.
        content_length: ``"auto"`` the true length; ``None`` no header; any other string sent as is.
        ranges: honour ``Range: bytes=N-`` with a 206 (else always answer 200 with everything).
        cut_at: close the connection after this many body bytes of a response.
        cut_times: how many responses are cut (``None``: all of them).
        trickle: ``(bytes, seconds)``: send that many bytes, then wait that long, and so on.
        endless: after the body, keep sending zero bytes until the client hangs up.
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    content_length: str | None = "auto"
    ranges: bool = True
    cut_at: int | None = None
    cut_times: int | None = None
    trickle: tuple[int, float] | None = None
    endless: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        range_header = self.headers.get("Range")
        self.server.requests.append((self.path, range_header))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if route.ranges and match:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(route.status)
        rest = body[start:]
        if route.content_length == "auto":
            self.send_header("Content-Length", str(len(rest)))
        elif route.content_length is not None:
            self.send_header("Content-Length", route.content_length)
        self.send_header("Content-Type", route.content_type)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.close_connection = True
        try:
            self._send_body(route, rest)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client hung up: what a download that gives up does

    def _send_body(self, route: Route, rest: bytes) -> None:
        cut = route.cut_at is not None and self.server.take_cut(self.path, route)
        if cut:
            rest = rest[: route.cut_at]
        step, pause = route.trickle or (len(rest) or 1, 0.0)
        for i in range(0, len(rest), step):
            self.wfile.write(rest[i: i + step])
            self.wfile.flush()
            if pause:
                time.sleep(pause)
        if route.endless:
            sent, zeros = 0, bytes(1 << 16)
            while sent < ENDLESS_SAFETY_CAP:
                self.wfile.write(zeros)
                sent += len(zeros)
        if cut:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[str, Route]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.cuts_made: dict[str, int] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []

    def take_cut(self, path: str, route: Route) -> bool:
        """True if this response of ``path`` is to be cut (counting against ``route.cut_times``)."""
        with self.lock:
            made = self.cuts_made.get(path, 0)
            if route.cut_times is not None and made >= route.cut_times:
                return False
            self.cuts_made[path] = made + 1
            return True


class LocalServer:
    """Context manager running :class:`_Server` in a thread.

    Args:
        files: URL path (``"/a.tar"``) -> bytes to serve well, or a :class:`Route`.
        truncate_once: paths whose first response is cut off halfway (``Content-Length`` says all).
    """

    def __init__(self, files: dict[str, bytes | Route], truncate_once: set[str] | frozenset = frozenset()):
        routes = {path: spec if isinstance(spec, Route) else Route(spec) for path, spec in files.items()}
        for path in truncate_once:
            routes[path].cut_at, routes[path].cut_times = len(routes[path].body) // 2, 1
        self._server = _Server(routes)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """``(path, Range header or None)`` of every request so far."""
        return self._server.requests

    def url(self, path: str) -> str:
        """The full URL of ``path`` on this server."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def refused_url(path: str = "/file") -> str:
    """A URL on 127.0.0.1 where nothing listens, so connecting is refused (an offline stand-in)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
