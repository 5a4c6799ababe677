"""A TCP relay in front of a real server, which can cut its connections mid-stream.

TLS runs end to end through it (it only copies bytes), so the client sees exactly what a
connection dropped by the network looks like: the socket ends in the middle of an answer.
It listens on 127.0.0.1, which the mail stack's certificate names.
"""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut_at: int | None = None  # bytes towards the client, counted from arming
        self._seen = 0
        self.cuts = 0
        self._closed = False

    def start(self) -> "CuttingProxy":
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()
        return self

    def cut_after(self, nbytes: int) -> None:
        """Drop every connection once `nbytes` more bytes have gone from server to client (once)."""
        with self._lock:
            self._cut_at, self._seen = nbytes, 0

    def cut_now(self) -> None:
        """Drop every connection at once (a network failure while nothing is being said)."""
        with self._lock:
            self.cuts += 1
        self._cut_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_client: bool) -> None:
        try:
            while data := source.recv(16384):
                sink.sendall(data)
                if to_client and self._count(len(data)):
                    self._cut_all()
                    return
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _count(self, n: int) -> bool:
        with self._lock:
            if self._cut_at is None:
                return False
            self._seen += n
            if self._seen < self._cut_at:
                return False
            self._cut_at = None
            self.cuts += 1
            return True

    def _cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self) -> None:
        self._closed = True
        self._listener.close()
        self._cut_all()
