"""WebSocket: the message as JSON per frame, and on the same port a page that draws it live.

http://HOST:PORT/ serves the page (assets/live_view.html: a canvas, no CDN, nothing fetched from
outside); ws://HOST:PORT/stream carries the messages. A client may ask for the frame too, as a
JPEG in base64: it sends {"request": "jpeg", "enable": true}.

Safe by default: 127.0.0.1 unless told otherwise; the handshake accepts the page's own origin and
those given (a tool without a browser sends no Origin and is accepted), the token when one is set
(``?token=...``), at most ``max_clients`` clients, incoming messages of at most a few kilobytes
(larger ones close that connection), a handshake within ``OPEN_SECONDS``. The origins are fixed
names, never the request's own Host header, which a DNS-rebinding page controls. What a client
sends that is not a known request is ignored (counted) and logged once.

Never lets a receiver slow the pipeline: the pipeline only appends the frame's JSON (made once)
to each client's queue of ``QUEUE_FRAMES``, which drops the oldest when full (counted); each
client's own thread sends, and encodes the JPEG it asked for; a stalled client (nothing taken from
its full queue for ``STALL_SECONDS``) is dropped on a thread of its own, the others untouched.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from urllib.parse import parse_qs, quote, urlsplit

import cv2

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.resources import asset
from pipnet_core.stream import optional_module
from pipnet_core.stream.runner import LiveResult, RateMeter

QUEUE_FRAMES = 8  # per client: what a client may fall behind (267 ms at 30 FPS) before its oldest frames go
MAX_INCOMING = 4096  # bytes: a request is a few dozen
KEEPALIVE_SECONDS = 5.0  # a client that answers no ping within this is closed
STALL_SECONDS = 5.0  # a client that has taken nothing from its full queue for this long is dropped
OPEN_SECONDS = 2.0  # a connection that has not finished its handshake by then is closed
LOOPBACK = ("127.0.0.1", "localhost", "::1")

_log = logging.getLogger(__name__)


class _Client:
    """One connection's queue (of the frame's JSON and its image) and counters."""

    def __init__(self, connection):
        self.connection = connection
        self.queue: deque[tuple[str, object]] = deque(maxlen=QUEUE_FRAMES)
        self.ready = threading.Condition()
        self.dropped = 0
        self.jpeg = False
        self.taken_at = time.monotonic()  # when its thread last took the queue to send
        self.stalled = False

    def drop(self) -> None:
        """Close the connection at once. Shutting the socket down first wakes a send blocked on a
        full socket, which holds the connection's lock that closing it waits for."""
        try:
            self.connection.socket.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass
        self.connection.close_socket()

    def offer(self, text: str, image) -> bool:
        """Queue a frame; True when that pushed the oldest out."""
        with self.ready:
            full = len(self.queue) == self.queue.maxlen
            if full:
                self.dropped += 1
                if not self.stalled and time.monotonic() - self.taken_at > STALL_SECONDS:
                    self.stalled = True  # dropped on a thread of its own: never in the pipeline's
                    threading.Thread(target=self.drop, daemon=True, name="websocket-drop").start()
            self.queue.append((text, image))
            self.ready.notify()
        return full

    def message(self, text: str, image) -> str:
        """The text to send: the frame's JSON, with the frame as a JPEG if this client asked."""
        if not self.jpeg:
            return text
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        jpeg = base64.b64encode(encoded.tobytes()).decode() if ok else ""
        return f'{text[:-1]},"jpeg":"{jpeg}"}}'  # the JSON object, one field longer


class WebSocketSink:
    """A server on HOST:PORT (port 0: any free one, see ``port``) in threads of its own."""

    name = "WebSocket"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        allowed_origins: tuple[str, ...] = (),
        token: str | None = None,
        max_clients: int = 8,
    ):
        server_module = optional_module("websockets.sync.server", "websockets")
        self._page = asset("live_view.html").read_text()
        self.token, self.max_clients = token, max_clients
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self.refused = self.ignored = self.dropped = 0  # handshakes refused, requests ignored, frames dropped
        self.meter = RateMeter()
        try:
            self._server = server_module.serve(
                self._serve,
                host,
                port,
                origins=None,
                process_request=self._handshake,
                max_size=MAX_INCOMING,
                open_timeout=OPEN_SECONDS,
                ping_interval=KEEPALIVE_SECONDS,
                ping_timeout=KEEPALIVE_SECONDS,
                close_timeout=1.0,
                compression=None,
                logger=logging.getLogger("pipnet_core.stream.websockets"),
            )
        except OSError as exc:  # asyncio's strerror adds the address again: the errno's own words
            raise PipnetError(
                f"{host}:{port}: cannot listen there ({os.strerror(exc.errno) if exc.errno else exc})"
            ) from None
        self.host, self.port = host, self._server.socket.getsockname()[1]
        own = [f"http://{'[' + name + ']' if ':' in name else name}:{self.port}" for name in {host, *LOOPBACK}]
        self.origins = {*own, *allowed_origins}
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="websocket")
        self._thread.start()

    def url(self, token: str | None = None) -> str:
        """The page's address (on this machine when the server listens on every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}/" + (f"?token={quote(token, safe='')}" if token else "")

    # -- the server's threads -------------------------------------------------------------------
    def _handshake(self, connection, request):
        """The page for plain HTTP; for a WebSocket, the checks before it opens (None: accept)."""
        path = urlsplit(request.path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if path.path not in ("/", "/index.html"):
                return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
            response = connection.respond(HTTPStatus.OK, self._page)
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            return response
        origin = request.headers.get("Origin")
        refusal = None
        if path.path != "/stream":
            refusal = (HTTPStatus.NOT_FOUND, "the stream is at /stream\n")
        elif origin is not None and origin not in self.origins:
            refusal = (HTTPStatus.FORBIDDEN, "origin not allowed (pipnet live --allow-origin)\n")
        elif self.token is not None and not hmac.compare_digest(
            parse_qs(path.query).get("token", [""])[0].encode(), self.token.encode()
        ):
            refusal = (HTTPStatus.UNAUTHORIZED, "a token is needed: ws://HOST:PORT/stream?token=...\n")
        elif len(self._clients) >= self.max_clients:
            refusal = (HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        if refusal is None:
            return None
        self.refused += 1
        return connection.respond(*refusal)

    def _serve(self, connection) -> None:
        client = _Client(connection)
        with self._lock:
            if len(self._clients) >= self.max_clients:  # two handshakes raced past the check
                return
            self._clients.add(client)
        reader = threading.Thread(target=self._read, args=(client,), daemon=True, name="websocket-reader")
        reader.start()
        try:
            while True:
                with client.ready:
                    client.ready.wait_for(lambda: client.queue or client.connection.close_code is not None, 1.0)
                    pending = list(client.queue)
                    client.queue.clear()
                    client.taken_at = time.monotonic()
                if client.connection.close_code is not None:
                    return
                for text, image in pending:
                    client.connection.send(client.message(text, image))
        except Exception:  # the connection closed or broke under a send: this client alone is gone
            return
        finally:
            with self._lock:
                self._clients.discard(client)

    def _read(self, client: _Client) -> None:
        """A client's requests; anything else is ignored (and logged once per kind)."""
        try:
            for text in client.connection:
                try:
                    request = json.loads(text)
                except (ValueError, TypeError):
                    request = None
                if isinstance(request, dict) and request.get("request") == "jpeg":
                    client.jpeg = bool(request.get("enable", True))
                    continue
                with self._lock:
                    self.ignored += 1
                    first = self.ignored == 1
                if first:
                    _log.warning(
                        "websocket: ignored a client's message that is not a known request (%s); "
                        "later ones are counted, not logged",
                        str(text)[:40],
                    )
        except Exception:  # closed, too large, not UTF-8: the connection is over
            pass
        finally:
            with client.ready:
                client.ready.notify()

    # -- the pipeline's side: never waits --------------------------------------------------------
    def send(self, result: LiveResult) -> None:
        with self._lock:
            clients = list(self._clients)
        if not clients:
            return
        text = json.dumps({**result.message, "send_time": time.monotonic()}, separators=(",", ":"))
        self.dropped += sum(client.offer(text, result.frame.image) for client in clients)
        self.meter.tick()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def status(self) -> str:
        return f"WebSocket {self.url()} {self.clients} client(s), {self.meter.rate:.0f} msg/s, {self.dropped} dropped"

    def close(self) -> None:
        """Stop listening and drop every client at once: a stalled one would hold a polite close
        (its socket full) for the whole close timeout."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.drop()
        self._server.shutdown()
        self._thread.join(5.0)
