"""Fixtures that start workers and kill whatever a test leaves running."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from tests.worker.workerproc import REPO, Spawn, Worker, start


def _kill(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def _spawner(log_dir: Path) -> Iterator[Spawn]:
    workers: list[Worker] = []

    def _spawn(
        args: Sequence[str], *, cwd: Path = REPO, env: dict[str, str] | None = None
    ) -> Worker:
        worker = start(args, log=log_dir / f"worker-{len(workers)}.log", cwd=cwd, env=env)
        workers.append(worker)
        return worker

    yield _spawn
    _kill(workers)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start workers for one test; whatever is still running afterwards is killed."""
    yield from _spawner(tmp_path)


@pytest.fixture(scope="module")
def spawn_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawn]:
    """Start workers shared by a module's tests, to start fewer processes."""
    yield from _spawner(tmp_path_factory.mktemp("workers"))
