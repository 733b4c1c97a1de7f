"""The SQLite writer process: the only write connection, group commit, WAL checkpoints.

``SQLiteStore`` starts ``python -m hookgate.store.sqlite.writer PATH SYNCHRONOUS FD RESERVE``
and talks to it over a socket pair. Writes run here, in their own process, because a writer *thread*
shares the gateway's GIL: every commit then waits for the busy event loop to hand the GIL
over, which capped ingest well below what either side does alone (design §7, BENCHMARKS.md).

The gateway sends frames of ops (:mod:`~hookgate.store.sqlite.protocol`). The writer takes
everything that is waiting, runs it in one transaction (:mod:`~hookgate.store.sqlite.writes`),
commits once (one ``fsync`` for the whole group) and answers with one reply per group.
When the socket closes (the gateway stopped, or died) the writer finishes its batch and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import sys
import threading
import time

from hookgate import isolation
from hookgate.errors import StoreFull, StoreUnavailable
from hookgate.store.sqlite import protocol as p
from hookgate.store.sqlite.schema import BUSY_MS, MULTI_ROW, connect
from hookgate.store.sqlite.writes import ISOLATED, WRITES, finish_all, insert_all

BATCH = 2048
CHECKPOINT_EVERY = 0.25
REWIND_FRAMES = 8192  # 32 MB of 4 KB pages
TRUNCATE_WAIT_MS = 100
"""How long a TRUNCATE checkpoint may wait for readers: meanwhile no write can start."""

Result = tuple[int, object]
"""An op's id and what it returned, or its ``Failure``."""


# one batch ---------------------------------------------------------------------------------
def run_batch(conn: sqlite3.Connection, ops: list[p.Op]) -> list[Result]:
    """Run every op in one transaction; on a failed commit every op gets the error."""
    inserts = [row for op in ops if type(op.write) is p.Insert for row in op.write.rows]
    try:
        if all(type(op.write) is p.Insert for op in ops) and len(inserts) <= MULTI_ROW:
            # The common burst of accepts: one statement that commits itself (autocommit).
            insert_all(conn, inserts)
            return [(op.id, None) for op in ops]
        conn.execute("BEGIN IMMEDIATE")
        insert_all(conn, inserts)
        finished = iter(finish_all(conn, [op.write for op in ops if type(op.write) is p.Finish]))
        results: list[Result] = []
        for op in ops:
            kind = type(op.write)
            if kind is p.Insert:
                results.append((op.id, None))
            elif kind is p.Finish:
                results.append((op.id, next(finished)))
            else:
                results.append((op.id, _run_op(conn, op.write)))
        conn.execute("COMMIT")
        return results
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        failure = p.Failure.of(_translate(exc))
        return [(op.id, failure) for op in ops]


def _run_op(conn: sqlite3.Connection, write: p.AnyWrite) -> object:
    run = WRITES[type(write)]
    if type(write) not in ISOLATED:
        return run(conn, write)
    conn.execute("SAVEPOINT op")
    try:
        result = run(conn, write)
        conn.execute("RELEASE op")
        return result
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return p.Failure.of(_translate(exc))


def _code(exc: sqlite3.Error) -> int:
    """The primary result code (``SQLITE_FULL``: the disk is full), without its extension."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error) and _code(exc) == sqlite3.SQLITE_FULL:
        return StoreFull(f"SQLite write failed: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"SQLite write failed: {exc}")
    return exc


# the process -------------------------------------------------------------------------------
class Inbox:
    """Frames from the gateway: block for the first, then take what else is already there."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.closed = False

    def take(self, limit: int = BATCH) -> list[p.Op] | None:
        """The next group of ops, or None once the gateway closed its end."""
        ops: list[p.Op] = []
        while len(ops) < limit:
            payload = p.take_frame(self.buffer)
            if payload is not None:
                ops += p.ops_decoder.decode(payload)
                continue
            if self.closed:
                break
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT if ops else 0)
            except BlockingIOError:
                break
            if not data:
                self.closed = True
                break
            self.buffer += data
        return ops or None


class Checkpoints(threading.Thread):
    """Copies committed WAL pages into the database file now and then (PASSIVE: it never
    blocks the writer), so a checkpoint is never a spike inside a commit.

    Under steady load such a checkpoint never quite catches up (frames keep arriving while it
    copies), and SQLite rewinds the WAL only after one that did: the WAL would grow without
    bound, and with it the disk traffic. So when the WAL is past ``REWIND_FRAMES``, the writer
    itself checkpoints the last few frames between two batches (``catch_up``), and its next
    commit starts the WAL from the beginning again.

    A WAL and the database file hold the same pages twice until the WAL is rewound. While the
    volume's free space is below twice the reserve (``tight``, looked at here each round),
    checkpoints are TRUNCATE, which empties the WAL file: here each round (for when the writer
    is idle) and by the writer after each batch. On a tight disk the data is held once, and the
    space a checkpoint needs is never taken from space freed by hand.
    """

    def __init__(self, conn: sqlite3.Connection, *, path: str, reserve: int) -> None:
        super().__init__(name="hookgate-sqlite-checkpoint", daemon=True)
        self.conn = conn
        self.directory = os.path.dirname(os.path.abspath(path))
        self.reserve = reserve
        self.stop = threading.Event()
        self.catch_up = threading.Event()
        self.tight = False
        self._look()

    def _look(self) -> None:
        with contextlib.suppress(OSError):
            volume = os.statvfs(self.directory)
            self.tight = volume.f_bavail * volume.f_frsize < 2 * self.reserve

    def run(self) -> None:
        while not self.stop.wait(CHECKPOINT_EVERY):
            self._look()
            if self.tight:
                truncate_wal(self.conn)
                continue
            with contextlib.suppress(sqlite3.Error):
                _, frames, _ = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= REWIND_FRAMES:
                    self.catch_up.set()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def truncate_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint everything and empty the WAL file; if a reader holds it up for longer than
    ``TRUNCATE_WAIT_MS``, what could be copied is, and the next batch tries again."""
    conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
    try:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")


def serve(sock: socket.socket, path: str, synchronous: str, reserve: int) -> None:
    conn = connect(path, synchronous)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    checkpoints = Checkpoints(connect(path, synchronous), path=path, reserve=reserve)
    checkpoints.start()
    inbox = Inbox(sock)
    try:
        while (ops := inbox.take()) is not None:
            started = time.perf_counter()
            results = run_batch(conn, ops)
            try:
                sock.sendall(p.frame((len(ops), time.perf_counter() - started, results)))
            except OSError:
                break  # the gateway is gone; what was committed stays committed
            if checkpoints.tight:
                truncate_wal(conn)
            elif checkpoints.catch_up.is_set():
                checkpoints.catch_up.clear()
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()
        checkpoints.stop.set()
        checkpoints.join()


def main(argv: list[str]) -> None:
    # The gateway stops the writer by closing the socket (end of file ends `serve`), after its
    # last write: a SIGINT sent to the terminal's whole group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolation.make_undumpable()  # its memory holds what it writes: workers must not read it
    path, synchronous, fd, reserve = argv
    with socket.socket(fileno=int(fd)) as sock:
        serve(sock, path, synchronous, int(reserve))


if __name__ == "__main__":
    main(sys.argv[1:])
