"""The MLflow store: where it is, a client for it, experiments, and error containment.

Store. Default: an embedded SQLite file under the results root,
``sqlite:////abs/results/mlflow.db``, with artifacts in ``<results>/mlartifacts`` (set as
the experiment's artifact location when the experiment is created; any ``sqlite:///``
store keeps its artifacts beside its file). ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``
points at a server instead, which stores the artifacts itself (docs/tracking.md).

Failure policy. ``result.json`` is what resume and ``bench table`` rely on; MLflow is
the record for humans. So:

* the store is checked when a suite or a study starts (:func:`open_experiment`): if it
  cannot be opened (server down, bad URI, unwritable file) the command stops before
  training anything, with one line naming the URI and the way out (``--no-mlflow``);
* a tracking error later on never fails a run (:func:`guard`): it prints one
  ``tracking:`` line and turns MLflow logging off for the rest of that process; the run's
  ``result.json`` is complete, and the next ``bench run`` of the suite backfills MLflow;
* a server (``http(s)://``) is never waited on for long: its requests get a short timeout
  and one retry (:data:`HTTP_LIMITS`, set when its client is made), and the per-epoch
  metrics of a training loop go through a bounded background sender
  (:mod:`bench.tracking.sender`), so a server that dies or hangs mid-suite costs seconds,
  once, not MLflow's default minutes of retries per call.

MLflow is imported lazily: ``bench ls`` and ``bench run --dry-run`` never load it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_VALUE = 8000
BATCH = 100  # params / tags per log_batch call

# MLflow's HTTP client reads these on every request (mlflow.utils.rest_utils.http_request);
# its defaults (120 s timeout, 7 retries with backoff factor 2, honouring Retry-After)
# stall a call to a dead server for minutes. Set for a server's client unless the
# environment already sets them. One retry comes at once (urllib3 backs off from the
# second): a refused connection fails in milliseconds, a hanging server in 2 x 5 s.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}


class TrackingError(BenchError):
    """The tracking store cannot be used (raised only when a suite or study starts)."""


# --------------------------------------------------------------------------- where


def default_tracking_uri(results_root: Path | str) -> str:
    """``sqlite:////abs/results/mlflow.db`` (four slashes: an absolute path)."""
    return f"sqlite:///{Path(results_root).resolve() / DB_NAME}"


def resolve_tracking_uri(results_root: Path | str, tracking_uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded default."""
    return (
        tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(results_root)
    )


def remote(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (MLflow's REST store over HTTP)."""
    return uri.startswith(("http://", "https://"))


def limit_http() -> None:
    """:data:`HTTP_LIMITS` for this process (and the workers it spawns), where unset."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores, or in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path).resolve() if path and path != ":memory:" else None


def artifact_location_for(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its file (``<dir>/mlartifacts``); a server
    decides for itself (its ``--artifacts-destination``)."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).as_uri() if db is not None else None


def probe(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) when a server is not up: an
    ``OSError`` naming why. Other stores (SQLite files) are not probed here."""
    if not remote(uri):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise OSError(f"/health answered HTTP {resp.status}")
    except (OSError, urllib.error.URLError) as exc:
        raise OSError(f"server not reachable ({getattr(exc, 'reason', exc)})") from None


# ---------------------------------------------------------------- client, experiment


def quiet_mlflow_logs() -> None:
    """MLflow and alembic announce schema creation at INFO; keep the console for runs."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.lru_cache(maxsize=4)
def client(uri: str):
    """An ``MlflowClient`` for ``uri`` (one per process and URI)."""
    from mlflow import MlflowClient

    quiet_mlflow_logs()  # after the import: importing mlflow sets its loggers to INFO
    # no tqdm bars from MLflow's artifact up/downloads between our own progress bars
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if remote(uri):
        limit_http()
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    # a new SQLite store creates and migrates its tables when first opened: one process at
    # a time (two bench run, or a tune worker beside a bench run, on one results dir)
    from bench.core.claims import file_lock

    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock")):
        mlflow_client = MlflowClient(uri)
        mlflow_client.search_experiments(max_results=1)
    return mlflow_client


def get_or_create_experiment(mlflow_client, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) if missing."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        try:
            return mlflow_client.create_experiment(name, artifact_location=artifact_location)
        except Exception:  # another process created it meanwhile
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage != "active":
        raise TrackingError(
            f"tracking: MLflow experiment {name!r} is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or remove "
            "it for good (mlflow gc)"
        )
    return exp.experiment_id


@contextlib.contextmanager
def usable(uri: str) -> Iterator[None]:
    """Any error inside (a server down, a bad URI, an unwritable file) as one
    :class:`TrackingError` line naming the URI and the way out: for the calls made while a
    suite or a study starts, before anything runs."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"tracking: cannot use MLflow at {uri}: {one_line(exc)} (start the server, fix "
            "--tracking-uri / MLFLOW_TRACKING_URI, or run with --no-mlflow)"
        ) from None


def open_experiment(uri: str, name: str) -> str:
    """Check the store and open (or create) experiment ``name``; return its id. Tracking
    is on again in this process (epoch metrics still queued for an earlier experiment are
    dropped). A store that cannot be used is a :class:`TrackingError` (:func:`usable`)."""
    global _broken, _generation
    _broken = None
    _generation += 1
    with usable(uri):
        probe(uri)
        db = sqlite_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        return get_or_create_experiment(client(uri), name, artifact_location_for(uri))


def log_batch(mlflow_client, run_id: str, metrics=(), params=(), tags=()) -> None:
    """``log_batch`` in as few calls as MLflow's limits allow (100 params, 100 tags and
    1000 entities in all per call)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        mlflow_client.log_batch(
            run_id, metrics=metrics[:800], params=params[:BATCH], tags=tags[:BATCH]
        )
        metrics, params, tags = metrics[800:], params[BATCH:], tags[BATCH:]


# ------------------------------------------------------- provenance, owner, params


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


@functools.lru_cache(maxsize=1)
def git_info() -> tuple[str, str]:
    """(commit, dirty) of the harness checkout: ``git rev-parse HEAD`` or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown", "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = "unknown" if status.returncode else str(bool(status.stdout.strip())).lower()
        return commit.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def _start_ticks(pid: int) -> str:
    """A process's start time (Linux /proc), so a reused pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def owner_token() -> str:
    """``host:pid:start`` of this process: who owns the runs it leaves RUNNING."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def owner_alive(token: str | None) -> bool:
    """Whether the process named by an owner token still runs (only knowable on its host)."""
    try:
        host, pid, start = (token or "").rsplit(":", 2)
        pid_i = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False  # another host: cannot tell; treat as gone
    if Path("/proc").is_dir():
        return Path(f"/proc/{pid_i}").is_dir() and _start_ticks(pid_i) == start
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> ``{"a.b.c": "value"}``; lists as compact JSON; empty dicts dropped."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten_params(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, list | tuple):
        text = json.dumps(obj, separators=(",", ":"), default=str)
    else:
        text = str(obj)
    if len(text) > MAX_PARAM_VALUE:
        text = text[: MAX_PARAM_VALUE - 3] + "..."
    out[prefix or "value"] = text
    return out


# ------------------------------------------------------------- error containment

_broken: str | None = None  # set by the first tracking error of this process
_generation = 0  # bumped each time tracking is turned on again (open_experiment)


def enabled() -> bool:
    return _broken is None


def generation() -> int:
    """Which turn of tracking this is: work queued in an earlier one is stale."""
    return _generation


def fail(what: str, exc: BaseException) -> None:
    """Turn tracking off for the rest of this process, saying why in one line (the first
    error only)."""
    global _broken
    if _broken is None:
        _broken = one_line(exc)
        print(
            f"tracking: {what} failed ({_broken}); MLflow logging is off for the rest "
            "of this process (result.json files are complete; the next `bench run` "
            "backfills MLflow)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Run tracking code; on error print one line and turn tracking off in this process."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a run
        fail(what, exc)
