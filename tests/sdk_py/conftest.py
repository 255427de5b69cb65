"""The SDK's tests run against the real gateway, served over real HTTP, on real Valkey."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import LiveServer


@pytest.fixture
def url(live: LiveServer) -> str:
    return f"http://127.0.0.1:{live.port}"


class Relay:
    """An HTTP relay in front of the gateway that can lose replies or vanish.

    Losing the reply after the gateway has processed a request is the fault that makes
    retries dangerous; a real network produces it, a test needs it on demand. Requests are
    relayed one by one (by ``Content-Length``), so a kept-alive connection still loses only
    the reply picked: the next ``drop_replies`` replies to requests starting with
    ``drop_prefix``.
    """

    def __init__(self, target_port: int, drop_prefix: bytes = b"POST /v1/batch") -> None:
        self.target_port = target_port
        self.drop_prefix = drop_prefix
        self.drop_replies = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open = True
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self._open:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _message(f: Any) -> bytes | None:
        """One HTTP/1.1 message (head and Content-Length body) from a socket file."""
        head = b""
        while True:
            line = f.readline()
            if not line:
                return None
            head += line
            if line in (b"\r\n", b"\n"):
                break
        length = 0
        for h in head.split(b"\r\n")[1:]:
            name, _, value = h.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return head + (f.read(length) if length else b"")

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        with self._lock:
            self._conns += [client, upstream]
        cf, uf = client.makefile("rb"), upstream.makefile("rb")
        try:
            while (request := self._message(cf)) is not None:
                upstream.sendall(request)
                reply = self._message(uf)  # the gateway has answered: it did its work
                if reply is None:
                    return
                with self._lock:
                    lose = self.drop_replies > 0 and request.startswith(self.drop_prefix)
                    if lose:
                        self.drop_replies -= 1
                        self.dropped += 1
                if lose:
                    return  # the reply is lost with the connection
                client.sendall(reply)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop listening and cut every open connection: the network is gone."""
        self._open = False
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._sock.close()
        with self._lock:
            for sock in self._conns:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(live: LiveServer) -> Iterator[Relay]:
    r = Relay(live.port)
    yield r
    r.close()


@pytest.fixture
def stored(r: Any) -> Callable[[str], list[dict[str, Any]]]:
    """``stored(purpose)``: every event part in that purpose's streams."""
    from tests.helpers import stream_events

    return lambda purpose: [part for _, _, part in stream_events(r, purpose)]


def recording(calls: list[str], name: str, value: object) -> Callable[[], object]:
    """A device function that notes in ``calls`` each time the SDK asks it."""

    def read() -> object:
        calls.append(name)
        return value

    return read
