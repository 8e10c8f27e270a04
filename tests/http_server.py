"""A tiny HTTP server on 127.0.0.1 for download tests: serves bytes from a dict, honours Range.

    with LocalServer({"/good.tar": data}) as server:
        url = server.url("/good.tar")

``truncate_once`` paths send their full ``Content-Length`` but only half the body on the first
request and then drop the connection, like a flaky network; ``server.requests`` records
``(path, Range header or None)`` of every request so tests can check a resume asked for a range.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        range_header = self.headers.get("Range")
        self.server.requests.append((self.path, range_header))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if range_header:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            start = int(match.group(1)) if match else 0
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in self.server.truncate_once:
            self.server.truncate_once.discard(self.path)
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(rest)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes], truncate_once: set[str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.truncate_once = set(truncate_once)
        self.requests: list[tuple[str, str | None]] = []


class LocalServer:
    """Context manager running :class:`_Server` in a thread.

    Args:
        files: URL path (``"/a.tar"``) -> bytes to serve.
        truncate_once: paths whose first response is cut off halfway.
    """

    def __init__(self, files: dict[str, bytes], truncate_once: set[str] | frozenset = frozenset()):
        self._server = _Server(dict(files), set(truncate_once))
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
