"""A TCP proxy that adds latency to every request on its way to a server (a remote object store
emulated on loopback): each chunk of bytes a client sends waits ``delay`` seconds before it is
passed on; the answers come back undelayed. It runs on its own event loop thread in this process."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class LatencyProxy:
    """Listens on ``127.0.0.1:port`` and forwards to ``host:port_to`` with ``delay`` s per request."""

    def __init__(self, host: str, port_to: int, delay: float) -> None:
        self.host, self.port_to, self.delay = host, port_to, delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="latency-proxy", daemon=True)
        self.thread.start()
        ready.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port_to)
            await asyncio.gather(self._pipe(reader, up_writer, self.delay), self._pipe(up_reader, writer, 0.0))
        except asyncio.CancelledError:  # closed (:meth:`close`): the connection just ends
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await src.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                dst.close()

    def close(self) -> None:
        """Drop the open connections and stop the loop."""

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self.thread.join(timeout=5)
