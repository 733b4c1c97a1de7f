"""The gateway's end of the SQLite writer process: starting it (again, if it dies), sending it
the writes of each event-loop turn in one frame, and resolving each caller after its commit."""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec

from hookgate import isolation, logs
from hookgate.errors import StoreFull, StoreUnavailable
from hookgate.store.shared import settle
from hookgate.store.sqlite import protocol as p

R = TypeVar("R")
RESTART_DELAY = 0.5
log = logs.get("hookgate.store")


class _Socket(asyncio.Protocol):
    """The writer's socket: reply frames in, loss reported."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.buffer = bytearray()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (payload := p.take_frame(self.buffer)) is not None:
            self.writer._settle(p.reply_decoder.decode(payload))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.writer._lost(self)


class Writer:
    """The writer process of one database, as the store sees it: :meth:`write` and wait."""

    def __init__(
        self, path: str, synchronous: str, disk_reserve: int, on_full: Callable[[str], None]
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.disk_reserve = disk_reserve
        self.on_full = on_full
        """Told why, when a write failed because the disk is full."""
        self.on_commit: Callable[[int, float], None] = lambda _ops, _seconds: None
        """Called after each commit with (operations, seconds spent in the writer)."""
        self._ids = itertools.count()
        self._waiting: dict[int, tuple[asyncio.Future[Any], msgspec.msgpack.Decoder[Any]]] = {}
        self._pending: list[p.Op] = []
        self._socket: _Socket | None = None
        self._transport: asyncio.Transport | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hookgate.store.sqlite.writer",
                self.path,
                self.synchronous,
                str(theirs.fileno()),
                str(self.disk_reserve),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=isolation.inherited_environment(),  # it needs none of the gateway's secrets
                # Its own session: Ctrl-C at a terminal (or `timeout`) signals the whole
                # foreground group, and the writer must outlive the gateway's shutdown, which
                # stops it by closing the socket once the last write is flushed.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise StoreUnavailable(f"cannot start the SQLite writer process: {exc}") from None
        finally:
            theirs.close()
        link = _Socket(self)
        transport, _ = await self._loop.create_unix_connection(lambda: link, sock=ours)
        self._socket, self._transport = link, transport
        if self._pending:
            self._flush()

    def _lost(self, link: _Socket) -> None:
        """Every op the writer had not answered fails (it may or may not have committed, so
        callers answer 503, never 2xx); a new writer starts unless the store is closing."""
        if link is not self._socket:
            return
        self._socket = self._transport = None
        lost = StoreUnavailable("the SQLite writer process exited; retry")
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(lost)
        self._waiting.clear()
        self._pending.clear()
        if not self._closing and self._loop is not None:
            code = self.process.returncode if self.process else None
            log.error("SQLite writer process exited; restarting", exit_code=code)
            self._loop.call_later(RESTART_DELAY, self._restart)

    def _restart(self) -> None:
        if not self._closing and self._socket is None and self._loop is not None:
            task = self._loop.create_task(self.start())
            task.add_done_callback(self._restarted)

    def _restarted(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("cannot restart the SQLite writer process", error=str(exc))
            assert self._loop is not None
            self._loop.call_later(RESTART_DELAY, self._restart)

    async def close(self) -> None:
        """Send what is pending, let the writer commit it and exit."""
        self._closing = True
        if self._transport is not None and self._socket is not None:
            link = self._socket
            if self._pending:
                self._flush()
            self._transport.write_eof()
            await link.lost
        if self.process is not None:
            await self.process.wait()
            self.process = None

    def write(self, write: p.Write[R]) -> asyncio.Future[R]:
        """Queue a write for this loop turn's frame; the future resolves after its commit."""
        if self._loop is None or self._closing:
            raise StoreUnavailable("the store is not open")
        if self._socket is None:
            raise StoreUnavailable("the SQLite writer process is restarting; retry")
        op_id = next(self._ids)
        future: asyncio.Future[R] = self._loop.create_future()
        self._waiting[op_id] = future, p.RESULTS[type(write)]
        self._pending.append(p.Op(op_id, cast(p.AnyWrite, write)))
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if self._pending and self._transport is not None:
            self._transport.write(p.frame(self._pending))
            self._pending = []

    def _settle(self, reply: p.Reply) -> None:
        self.on_commit(reply.ops, reply.seconds)
        for op_id, raw in reply.results:
            if (waiting := self._waiting.pop(op_id, None)) is None:
                continue
            future, decoder = waiting
            value = decoder.decode(raw)
            if isinstance(value, p.Failure):
                error = value.error()
                if isinstance(error, StoreFull):
                    self.on_full(str(error))
                settle(future, error)
            else:
                settle(future, value)
