"""Per-epoch metrics to a tracking server, off the training loop.

A training loop hands each epoch's metrics to :func:`submit` and goes on at once; one
daemon thread per process sends them (``log_batch``, what is queued for a run merged into
few calls) under the short HTTP limits of :data:`bench.tracking.client.HTTP_LIMITS`.
Before a run is ended its metrics are flushed (:func:`flush`, at most
:data:`FLUSH_SECONDS`), so a run is only marked FINISHED with its whole history.

Bounded everywhere: at most :data:`MAX_QUEUED` batches wait (more means the server is not
keeping up), a send that fails turns tracking off for the process
(:func:`bench.tracking.client.fail`) and drops what is queued, and a flush that does not
drain in time does the same. What is lost is recovered as before: the run's
``result.json`` is complete, and the next ``bench run`` backfills MLflow from it.

Only for servers (:func:`bench.tracking.client.remote`): SQLite and other local stores
are written synchronously, as they always were.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass, field

from bench.tracking.client import client, enabled, fail, generation, log_batch

MAX_QUEUED = 1000  # batches (one per epoch) waiting to be sent
FLUSH_SECONDS = 5.0  # how long ending a run waits for its queued metrics


class NotSent(RuntimeError):
    """Queued metrics did not reach the server (the reason was printed by ``fail``)."""


@dataclass
class Item:
    uri: str
    run_id: str
    metrics: list  # mlflow.entities.Metric
    what: str  # for the one tracking: line, e.g. "logging epoch metrics of <run key>"


@dataclass
class Sender:
    """A queue and the thread that drains it (one per process and tracking turn)."""

    turn: int
    pid: int = field(default_factory=os.getpid)
    items: deque = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    busy: bool = False
    closed: bool = False
    thread: threading.Thread | None = None

    def submit(self, item: Item) -> bool:
        """Queue ``item``; False when :data:`MAX_QUEUED` batches already wait."""
        with self.cond:
            if len(self.items) >= MAX_QUEUED:
                return False
            self.items.append(item)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self.loop, name="ka-bench-mlflow-sender", daemon=True
                )
                self.thread.start()
            self.cond.notify_all()
        return True

    def loop(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.items or self.closed)
                if self.closed:
                    return
                batch = list(self.items)
                self.items.clear()
                self.busy = True
            try:
                self.send(batch)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def send(self, batch: list[Item]) -> None:
        """One ``log_batch`` per run (in queue order); the first error turns tracking
        off and drops the rest."""
        runs: dict[tuple[str, str], list[Item]] = {}
        for item in batch:
            runs.setdefault((item.uri, item.run_id), []).append(item)
        for (uri, run_id), items in runs.items():
            if not self.live():
                return
            try:
                log_batch(client(uri), run_id, metrics=[m for i in items for m in i.metrics])
            except Exception as exc:  # noqa: BLE001 - tracking must never fail a run
                if self.live():
                    fail(items[0].what, exc)
                return

    def live(self) -> bool:
        return not self.closed and enabled() and generation() == self.turn

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is sent (or dropped); False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.items and not self.busy, timeout)

    def close(self) -> None:
        """Stop the thread after its current send; what is queued is dropped."""
        with self.cond:
            self.closed = True
            self.items.clear()
            self.cond.notify_all()


_lock = threading.Lock()
_sender: Sender | None = None


def current() -> Sender:
    """This process's sender for this tracking turn (a stale one is closed)."""
    global _sender
    with _lock:
        fresh = _sender is not None and _sender.turn == generation() and not _sender.closed
        if not fresh or _sender.pid != os.getpid():
            if _sender is not None and _sender.pid == os.getpid():
                _sender.close()
            _sender = Sender(generation())
        return _sender


def submit(uri: str, run_id: str, metrics: list, what: str) -> None:
    """Queue ``metrics`` of run ``run_id``; returns at once. Raises :class:`NotSent` when
    the queue is full (the server is not keeping up)."""
    if metrics and not current().submit(Item(uri, run_id, metrics, what)):
        raise NotSent(f"{MAX_QUEUED} batches of metrics wait for {uri}; it is not keeping up")


def flush(timeout: float = FLUSH_SECONDS) -> None:
    """Wait (at most ``timeout`` seconds) until the queued metrics are sent. Raises
    :class:`NotSent` if they were not: timed out, or a send failed."""
    sender = _sender
    if sender is None or sender.pid != os.getpid() or sender.turn != generation():
        return  # nothing queued in this process and tracking turn
    if not sender.flush(timeout):
        raise NotSent(f"queued epoch metrics not sent within {timeout:g} s")
    if not enabled():
        raise NotSent("queued epoch metrics were not sent")
