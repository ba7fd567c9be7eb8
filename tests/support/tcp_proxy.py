"""A TCP proxy on loopback that a test can cut and restore, to play a network drop.

    proxy = TcpProxy("127.0.0.1", server_port, listen_port)
    await proxy.start()          # clients connect to 127.0.0.1:listen_port
    await proxy.cut()            # every connection closed, new ones refused
    await proxy.cut(silent=True) # or: bytes vanish, connections hang, new ones refused
    await proxy.restore()        # accepting and forwarding again
    await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["TcpProxy"]

logger = logging.getLogger(__name__)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.silent = False
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    """Forwards ``listen_port`` on 127.0.0.1 to ``host:port``; counts the connections."""

    def __init__(self, host: str, port: int, listen_port: int) -> None:
        self.host, self.port, self.listen_port = host, port, listen_port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port,
                                                  reuse_address=True)

    async def cut(self, *, silent: bool = False) -> None:
        """Refuse new connections; close the open ones (``silent``: keep them open and
        drop every byte, as a pulled cable does, so only a timeout can tell)."""
        await self._close_listener()
        for link in list(self._links):
            if silent:
                link.silent = True
            else:
                self._drop(link)

    async def restore(self) -> None:
        """Accept connections again; connections left hanging by a silent cut are reset."""
        for link in list(self._links):
            if link.silent:
                self._drop(link)
        await self.start()

    async def stop(self) -> None:
        await self._close_listener()
        for link in list(self._links):
            self._drop(link)

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _drop(self, link: _Link) -> None:
        link.abort()
        self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [asyncio.create_task(self._pipe(reader, up_writer, link)),
                      asyncio.create_task(self._pipe(up_reader, writer, link))]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._drop(link)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link) -> None:
        try:
            while data := await reader.read(65536):
                if link.silent:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.silent:
                link.abort()
