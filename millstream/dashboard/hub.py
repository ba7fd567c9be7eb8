"""Server-Sent Events to every open page: one bounded queue per browser.

An event is encoded once and put on each client's queue. A browser that cannot keep up
(its queue is full) is disconnected rather than allowed to grow memory without bound; its
EventSource reconnects by itself and starts again from a fresh snapshot, so it loses
nothing it would show. Window results go only to the pages that look at that tag.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

__all__ = ["Client", "Hub", "sse"]

logger = logging.getLogger(__name__)


def sse(event: str, data: Any) -> bytes:
    """One SSE message (compact JSON on one ``data:`` line)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return f"event: {event}\ndata: {text}\n\n".encode()


class Client:
    """One open page. ``tag``: the tag it shows (window results for it only)."""

    def __init__(self, tag: str | None, maxsize: int) -> None:
        self.tag = tag
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)
        self.dropped = False

    def put(self, chunk: bytes) -> bool:
        """Queue ``chunk``; False (and the stream is ended) when the page is too slow."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(chunk)
            return True
        except asyncio.QueueFull:
            self.close()
            return False

    def close(self) -> None:
        """End this page's stream (what is queued is dropped); its browser reconnects."""
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Hub:
    """Lifecycle: :meth:`add` a client when a page opens the stream, :meth:`remove` when
    it goes; :meth:`broadcast` and :meth:`to_tag` from the event loop's thread."""

    def __init__(self, maxsize: int = 512) -> None:
        self.maxsize = maxsize
        self.clients: set[Client] = set()
        self.sent = 0  # events queued, all clients together
        self.dropped = 0  # clients disconnected for being slow

    def add(self, tag: str | None) -> Client:
        client = Client(tag, self.maxsize)
        self.clients.add(client)
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    def broadcast(self, event: str, data: Any) -> None:
        if self.clients:
            self._send(self.clients, sse(event, data))

    def to_tag(self, tag: str, event: str, data: Any) -> None:
        """An event only the pages showing ``tag`` want."""
        watching = [c for c in self.clients if c.tag == tag]
        if watching:
            self._send(watching, sse(event, data))

    def _send(self, clients: Any, chunk: bytes) -> None:
        for c in list(clients):
            if c.put(chunk):
                self.sent += 1
            elif c in self.clients:
                self.clients.discard(c)
                self.dropped += 1
                logger.info("a dashboard page fell %d events behind: disconnected, it "
                            "reconnects with a fresh snapshot", self.maxsize)
