"""MLflow tracking of suites: one experiment per suite, a parent run per ``bench run``,
a child run per RunSpec, a run per teacher.

Store. Default: an embedded SQLite file under the results root,
``sqlite:////abs/results/mlflow.db``, with artifacts in ``<results>/mlartifacts`` (set as
the experiment's artifact location when the experiment is created; any ``sqlite:///``
store keeps its artifacts beside its file). ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``
points at a server instead, which stores the artifacts itself (docs/tracking.md).

What a child run holds (the contract :func:`bench.report.load_results_mlflow` reads):

* tags ``run_key, method, row, row_order, column, column_order, seed, suite``, plus
  ``kind=run``, ``git_commit`` (+ ``git_dirty``), ``device``, ``teacher_keys`` (comma
  separated; each names a run tagged ``kind=teacher, teacher_key=<key>``), ``owner``
  (host:pid:start of the ``bench run`` process), ``error`` when it failed,
  ``resumed_from_epoch`` when it continued from a checkpoint, ``backfilled`` when it was
  logged after the fact (``result.json``: at a restart; ``record``: by the suite process
  for a worker that did not log it live, e.g. on Ray);
* params: the resolved RunSpec flattened with dotted names (``dataset.name``,
  ``student.arch``, ``optim.lr``, ``params.T``, ``teachers.optim.epochs``, ...);
* metrics per epoch (step = epoch, logged live through the runner's epoch callbacks):
  ``loss``, ``loss/<term>``, ``lr``, ``epoch_time``, ``data_time``, ``step_time``,
  ``val_acc``; final (step 0):
  ``test_acc``, ``task_acc/T1``..., ``best_val_acc``, ``best_val_epoch``,
  ``test_acc_at_best_val``, ``time/{teachers,train,total}``;
* artifacts: ``config.yaml`` (the resolved run), ``result.json`` (the exact record the
  results store holds) and ``curves.png`` (training curves).

Failure policy. ``result.json`` is what resume and ``bench table`` rely on; MLflow is
the record for humans. So:

* the store is checked when the suite starts: if it cannot be opened (server down, bad
  URI, unwritable file) ``bench run`` stops before training anything, with one line
  naming the URI and the way out (``--no-mlflow``);
* a tracking error later on never fails a run: it prints one ``tracking:`` line and
  turns MLflow logging off for the rest of that process; the run's ``result.json`` is
  complete, and the next ``bench run`` of the suite backfills MLflow from it.

Resume (:meth:`SuiteTracker.reconcile`, at the start of every ``bench run``):

* RUNNING runs of the experiment whose owner process is gone (``kill -9``, a crashed
  node) are marked KILLED with an ``error`` tag; runs owned by a live ``bench run`` on
  this host are left alone;
* a run key with a FINISHED child but no finished ``result.json`` gets its
  ``result.json`` back from that child's ``result.json`` artifact (or, if the artifact is
  unreadable, rebuilt from the child's metrics) instead of being re-run, so a run key
  never gets a second FINISHED child;
* a finished ``result.json`` without a FINISHED child (tracking was off or broken) is
  logged to MLflow from the record (tag ``backfilled=result.json``).

MLflow is imported lazily: ``bench ls`` and ``bench run --dry-run`` never load it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError

log = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
FINAL_SCALARS = (
    "test_acc",
    "val_acc",
    "best_val_acc",
    "best_val_epoch",
    "test_acc_at_best_val",
    "val_falls",  # bench.health: the longest streak of falling val accuracy
    "val_fall_drop",
)
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_VALUE = 8000
BATCH = 100  # params / tags per log_batch call


class TrackingError(BenchError):
    """The tracking store cannot be used (raised only when a suite starts)."""


# --------------------------------------------------------------------------- store


def default_tracking_uri(results_root: Path | str) -> str:
    """``sqlite:////abs/results/mlflow.db`` (four slashes: an absolute path)."""
    return f"sqlite:///{Path(results_root).resolve() / DB_NAME}"


def resolve_tracking_uri(results_root: Path | str, tracking_uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded default."""
    return (
        tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(results_root)
    )


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
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(uri)
    # a new SQLite store creates and migrates its tables when first opened: one process at
    # a time (two bench run, or a tune worker beside a bench run, on one results dir)
    from bench.claims import file_lock

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


def _probe(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) when a server is not up."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise OSError(f"/health answered HTTP {resp.status}")
    except (OSError, urllib.error.URLError) as exc:
        raise OSError(f"server not reachable ({getattr(exc, 'reason', exc)})") from None


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


# ------------------------------------------------------- provenance, owner, params


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
        return False  # another host: cannot tell; treat as gone (see module docstring)
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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The end-of-run metrics of a record, by MLflow name (step 0)."""
    metrics = record.get("metrics") or {}
    out = {k: float(metrics[k]) for k in FINAL_SCALARS if _finite(metrics.get(k))}
    history = record.get("history") or []
    if history and "val_acc" in history[-1]:
        out.pop("val_acc", None)  # already the last point of the per-epoch val_acc curve
    for task, acc in (metrics.get("task_acc") or {}).items():
        if _finite(acc):
            out[f"task_acc/{task}"] = float(acc)
    for name, seconds in (record.get("timings") or {}).items():
        if _finite(seconds):
            out[f"time/{name}"] = float(seconds)
    return out


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The per-epoch values of one history entry (everything numeric but ``epoch``)."""
    return {k: float(v) for k, v in record.items() if k != "epoch" and _finite(v)}


# ------------------------------------------------------------- error containment

_broken: str | None = None  # set by the first tracking error of this process


def enabled() -> bool:
    return _broken is None


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Run tracking code; on error print one line and turn tracking off in this process."""
    global _broken
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a run
        if _broken is None:
            _broken = one_line(exc)
            print(
                f"tracking: {what} failed ({_broken}); MLflow logging is off for the rest "
                "of this process (result.json files are complete; the next `bench run` "
                "backfills MLflow)",
                file=sys.stderr,
                flush=True,
            )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_batch(c, run_id: str, metrics=(), params=(), tags=()) -> None:
    """``log_batch`` in as few calls as MLflow's limits allow (100 params, 100 tags and
    1000 entities in all per call)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        c.log_batch(run_id, metrics=metrics[:800], params=params[:BATCH], tags=tags[:BATCH])
        metrics, params, tags = metrics[800:], params[BATCH:], tags[BATCH:]


def _tag(key: str, value: Any):
    from mlflow.entities import RunTag

    text = str(value)
    return RunTag(key, text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 3] + "...")


# ---------------------------------------------------------------- the child runs


@dataclass(frozen=True)
class TrackingTarget:
    """What a process executing a run needs to log it (picklable, sent to workers)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    owner: str
    suite: str


def run_tags(target: TrackingTarget, run, device: str | None) -> dict[str, str]:
    """Tags of a child run at creation (see the module docstring)."""
    meta = run.meta
    commit, dirty = git_info()
    tags = {
        "mlflow.parentRunId": target.parent_run_id,
        "kind": "run",
        "run_key": run.key,
        "suite": meta.suite,
        "method": meta.method,
        "row": meta.row,
        "row_order": str(meta.row_order),
        "column": meta.column,
        "column_order": str(meta.column_order),
        "seed": str(meta.seed),
        "git_commit": commit,
        "git_dirty": dirty,
        "mlflow.source.git.commit": commit,
        "owner": target.owner,
    }
    if device is not None:
        tags["device"] = device
    return tags


def run_config(run) -> dict[str, Any]:
    """The resolved run as written to the ``config.yaml`` artifact."""
    return {"run_key": run.key, **asdict(run.meta), "spec": run.spec.model_dump(mode="json")}


class RunTracker:
    """The child run of one RunSpec, in the process that executes it.

    ``start`` creates it (RUNNING, params, tags), :meth:`on_epoch` is an epoch callback of
    the shared loop, :meth:`finish` logs the final metrics and artifacts and ends it
    FINISHED or FAILED from the record. Every call is guarded (:func:`guard`)."""

    def __init__(self, target: TrackingTarget, run, run_id: str) -> None:
        self.target, self.run, self.run_id = target, run, run_id

    @classmethod
    def start(
        cls,
        target: TrackingTarget,
        run,
        device: str | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> RunTracker | None:
        if not enabled():
            return None
        with guard(f"starting the MLflow run of {run.key}"):
            c = client(target.uri)
            tags = {**run_tags(target, run, device), **(extra_tags or {})}
            name = f"{run.meta.row} | {run.meta.column} | seed {run.meta.seed}"
            created = c.create_run(target.experiment_id, tags=tags, run_name=name)
            from mlflow.entities import Param

            params = flatten_params(run.spec.model_dump(mode="json"))
            _log_batch(c, created.info.run_id, params=[Param(k, v) for k, v in params.items()])
            return cls(target, run, created.info.run_id)
        return None

    def on_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Epoch callback: every numeric value of the epoch's record at step=epoch."""
        self.log_epochs([record])

    def log_epochs(self, records: list[dict[str, Any]]) -> None:
        if not enabled():
            return
        with guard(f"logging epoch metrics of {self.run.key}"):
            from mlflow.entities import Metric

            now = _now_ms()
            metrics = [
                Metric(k, v, now, int(rec["epoch"]))
                for rec in records
                for k, v in epoch_metrics(rec).items()
            ]
            _log_batch(client(self.target.uri), self.run_id, metrics=metrics)

    def finish(self, record: dict[str, Any]) -> bool:
        """End the run from its record; sets ``record["mlflow_run_id"]`` when it worked."""
        if not enabled():
            return False
        finished = record.get("status") == "finished"
        with guard(f"finishing the MLflow run of {self.run.key}"):
            from mlflow.entities import Metric

            c = client(self.target.uri)
            now = _now_ms()
            metrics = [Metric(k, v, now, 0) for k, v in final_metrics(record).items()]
            tags = [_tag("teacher_keys", ",".join(t["key"] for t in record.get("teachers", [])))]
            if record.get("error"):
                tags.append(_tag("error", record["error"]))
            if record.get("resumed_from_epoch"):
                tags.append(_tag("resumed_from_epoch", record["resumed_from_epoch"]))
            _log_batch(c, self.run_id, metrics=metrics, tags=tags)
            logged = {**record, "mlflow_run_id": self.run_id}
            with tempfile.TemporaryDirectory(prefix="ka-bench-mlflow-") as tmp:
                write_run_artifacts(Path(tmp), self.run, logged)
                c.log_artifacts(self.run_id, tmp)
            c.set_terminated(self.run_id, "FINISHED" if finished else "FAILED")
            record["mlflow_run_id"] = self.run_id
            return True
        return False

    def kill(self, reason: str) -> None:
        """End the run KILLED (Ctrl-C): nothing to record, the run key stays to do."""
        if not enabled():
            return
        with guard(f"ending the MLflow run of {self.run.key}"):
            c = client(self.target.uri)
            c.set_tag(self.run_id, "error", reason)
            c.set_terminated(self.run_id, "KILLED")


def write_run_artifacts(folder: Path, run, record: dict[str, Any]) -> None:
    """``config.yaml``, ``result.json`` and (when there is a history) ``curves.png``."""
    (folder / "config.yaml").write_text(yaml.safe_dump(run_config(run), sort_keys=False))
    (folder / "result.json").write_text(
        json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    )
    if record.get("history"):
        try:
            write_curves(folder / "curves.png", record)
        except Exception as exc:  # noqa: BLE001 - a missing plot is not a tracking failure
            log.warning("curves for %s not drawn: %s", run.key, one_line(exc))


def write_curves(path: Path, record: dict[str, Any]) -> Path | None:
    """The run's training curves (loss terms, val_acc per epoch) via :mod:`bench.plots`."""
    from bench import plots, report

    fig = plots.training_curves(report.histories_frame([record]), record["row"])
    return None if fig is None else plots.save_figure(fig, path)


# --------------------------------------------------------- the suite (main process)


class SuiteTracker:
    """The experiment of a suite and the parent run of one ``bench run`` invocation."""

    def __init__(self, target: TrackingTarget, results_root: Path) -> None:
        self.target = target
        self.results_root = Path(results_root)
        self._teachers_logged: set[str] = set()

    @property
    def uri(self) -> str:
        return self.target.uri

    @property
    def parent_run_id(self) -> str:
        return self.target.parent_run_id

    @classmethod
    def open(
        cls,
        suite_name: str,
        results_root: Path | str,
        tracking_uri: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> SuiteTracker:
        """Open (or create) the suite's experiment and start the parent run; a store that
        cannot be used is a :class:`TrackingError` (one line) before anything runs."""
        global _broken
        results_root = Path(results_root).resolve()
        uri = resolve_tracking_uri(results_root, tracking_uri)
        _broken = None
        try:
            _probe(uri)
            db = sqlite_path(uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            c = client(uri)
            experiment_id = get_or_create_experiment(c, suite_name, artifact_location_for(uri))
            owner = owner_token()
            commit, dirty = git_info()
            parent = c.create_run(
                experiment_id,
                run_name=f"{suite_name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                tags={
                    "kind": "suite",
                    "suite": suite_name,
                    "owner": owner,
                    "git_commit": commit,
                    "git_dirty": dirty,
                    "mlflow.source.git.commit": commit,
                    "command": " ".join(sys.argv)[:MAX_TAG_VALUE],
                },
            )
            from mlflow.entities import Param

            flat = flatten_params(params or {})
            _log_batch(c, parent.info.run_id, params=[Param(k, v) for k, v in flat.items()])
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TrackingError(
                f"tracking: cannot use MLflow at {uri}: {one_line(exc)} (start the server, fix "
                "--tracking-uri / MLFLOW_TRACKING_URI, or run with --no-mlflow)"
            ) from None
        target = TrackingTarget(uri, experiment_id, parent.info.run_id, owner, suite_name)
        return cls(target, results_root)

    # -- queries

    def _search(self, filter_string: str) -> list:
        c = client(self.uri)
        runs, token = [], None
        while True:
            page = c.search_runs(
                [self.target.experiment_id], filter_string, max_results=1000, page_token=token
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    # -- resume

    def reconcile(self, runs: list, store, out=None) -> list[str]:
        """Make MLflow and the results store agree before a suite (re)starts; return the
        run keys whose ``result.json`` was restored from MLflow (module docstring)."""
        out = out if out is not None else sys.stdout
        restored: list[str] = []
        if not enabled():
            return restored
        with guard("reconciling MLflow with the results store"):
            c = client(self.uri)
            me = self.target.owner  # an earlier invocation in this process is over too
            stale = [
                r
                for r in self._search("attributes.status = 'RUNNING'")
                if r.info.run_id != self.parent_run_id
                and (r.data.tags.get("owner") == me or not owner_alive(r.data.tags.get("owner")))
            ]
            for r in stale:
                c.set_tag(
                    r.info.run_id,
                    "error",
                    "killed: its bench run process is gone (left RUNNING; marked at restart "
                    f"by parent run {self.parent_run_id})",
                )
                c.set_terminated(r.info.run_id, "KILLED")
            if stale:
                print(f"tracking: marked {len(stale)} stale RUNNING MLflow run(s) KILLED", file=out)
            finished: dict[str, Any] = {}
            for r in self._search("attributes.status = 'FINISHED'"):
                tags = r.data.tags
                if tags.get("kind") == "teacher" and tags.get("teacher_key"):
                    self._teachers_logged.add(tags["teacher_key"])
                elif tags.get("run_key"):
                    finished.setdefault(tags["run_key"], r)
            backfilled = 0
            for run in runs:
                record = store.read(run.key)
                done = bool(record) and record.get("status") == "finished"
                if done and run.key not in finished:
                    backfilled += self.log_record(run, record, backfill=True)
                elif not done and run.key in finished:
                    store.write(self._restore(run, finished[run.key]))
                    restored.append(run.key)
            if backfilled:
                print(
                    f"tracking: logged {backfilled} finished run(s) to MLflow from result.json",
                    file=out,
                )
            if restored:
                print(
                    f"tracking: restored {len(restored)} result.json file(s) from FINISHED "
                    "MLflow runs (not re-run)",
                    file=out,
                )
        return restored

    def _restore(self, run, mlrun) -> dict[str, Any]:
        """The record of a FINISHED child: its ``result.json`` artifact, else rebuilt."""
        c = client(self.uri)
        run_id = mlrun.info.run_id
        try:
            with tempfile.TemporaryDirectory(prefix="ka-bench-mlflow-") as tmp:
                path = c.download_artifacts(run_id, "result.json", tmp)
                record = json.loads(Path(path).read_text())
            if record.get("run_key") == run.key and record.get("status") == "finished":
                record["mlflow_run_id"] = run_id
                return record
        except Exception as exc:  # noqa: BLE001 - fall back to the metrics
            log.warning("result.json artifact of %s unreadable (%s)", run_id, one_line(exc))
        return rebuild_record(c, run, mlrun)

    # -- records arriving from the launcher

    def record_done(self, run, record: dict[str, Any]) -> None:
        """After ``result.json`` is written: log the record's teachers, and log the run
        itself if the executing process did not (Ray workers, a broken worker tracker)."""
        if not enabled():
            return
        if not record.get("mlflow_run_id"):
            self.log_record(run, record, backfill=False)
        self.log_teachers(record)

    def log_record(self, run, record: dict[str, Any], backfill: bool) -> int:
        """Log a whole run from its record (history, final metrics, artifacts); first end
        any RUNNING child of the same key this process left behind. Returns 1 if logged."""
        if not backfill:  # a worker's tracker broke mid-run: end what it left RUNNING
            with guard(f"ending the partial MLflow run of {run.key}"):
                c = client(self.uri)
                query = f"tags.run_key = '{run.key}' and attributes.status = 'RUNNING'"
                for r in self._search(query):
                    if r.data.tags.get("owner") == self.target.owner:
                        c.set_terminated(r.info.run_id, "KILLED")
        extra = {"backfilled": "result.json" if backfill else "record"}
        tracker = RunTracker.start(self.target, run, record.get("device"), extra)
        if tracker is None:
            return 0
        tracker.log_epochs(record.get("history") or [])
        ok = tracker.finish(dict(record))
        if ok and backfill:
            self.log_teachers(record)
        return int(ok)

    def log_teachers(self, record: dict[str, Any]) -> None:
        """One run per teacher key in this experiment (tag ``kind=teacher``), from the
        teacher cache's ``meta.json``: params, per-epoch history, own-class accuracy."""
        from bench.store import read_json

        for teacher in record.get("teachers") or []:
            key = teacher.get("key")
            if not key or key in self._teachers_logged or not enabled():
                continue
            meta_path = self.results_root / "teachers" / key / "meta.json"
            meta = read_json(meta_path)
            if meta is None:
                continue
            with guard(f"logging teacher {key}"):
                self._log_teacher(key, meta, meta_path, cached=bool(teacher.get("cached")))
                self._teachers_logged.add(key)

    def _log_teacher(self, key: str, meta: dict[str, Any], meta_path: Path, cached: bool):
        from mlflow.entities import Metric, Param

        c = client(self.uri)
        spec = meta.get("spec") or {}
        commit, dirty = git_info()
        task = spec.get("task")
        name = f"teacher T{(task or 0) + 1} {spec.get('arch', '')} [{key[:8]}]"
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "kind": "teacher",
            "teacher_key": key,
            "suite": self.target.suite,
            "task": f"T{(task or 0) + 1}",
            "arch": str(spec.get("arch")),
            "dataset": str((spec.get("dataset") or {}).get("name")),
            "from_cache": str(cached).lower(),
            "git_commit": commit,
            "git_dirty": dirty,
            "owner": self.target.owner,
        }
        run_id = c.create_run(self.target.experiment_id, tags=tags, run_name=name).info.run_id
        now = _now_ms()
        metrics = [
            Metric(k, v, now, int(rec["epoch"]))
            for rec in meta.get("history") or []
            for k, v in epoch_metrics(rec).items()
        ]
        for k in ("test_acc_own_classes", "train_time"):
            if _finite(meta.get(k)):
                metrics.append(Metric(k, float(meta[k]), now, 0))
        params = [Param(k, v) for k, v in flatten_params(spec).items()]
        _log_batch(c, run_id, metrics=metrics, params=params)
        c.log_artifact(run_id, str(meta_path))
        c.set_terminated(run_id, "FINISHED")

    # -- end of the invocation

    def close(
        self,
        status: str,
        counts: dict[str, int] | None = None,
        artifacts: Iterable[Path] = (),
        error: str | None = None,
        base: Path | None = None,
    ) -> None:
        """End the parent run: counts as metrics, the suite's tables and plots as artifacts
        (at their paths relative to ``base``)."""
        if not enabled():
            return
        from mlflow.entities import Metric

        with guard("ending the suite's MLflow run"):
            c = client(self.uri)
            now = _now_ms()
            metrics = [Metric(f"runs_{k}", float(v), now, 0) for k, v in (counts or {}).items()]
            tags = [_tag("error", error)] if error else []
            _log_batch(c, self.parent_run_id, metrics=metrics, tags=tags)
            for path in map(Path, artifacts):
                if path.is_file():
                    inside = base is not None and path.is_relative_to(base)
                    sub = path.parent.relative_to(base).as_posix() if inside else "."
                    c.log_artifact(self.parent_run_id, str(path), None if sub == "." else sub)
            c.set_terminated(self.parent_run_id, status)


def rebuild_record(mlflow_client, run, mlrun) -> dict[str, Any]:
    """A ``result.json`` record rebuilt from a FINISHED child's metrics and tags (when
    its ``result.json`` artifact is gone): metrics, per-epoch history, teacher keys."""
    from bench.runner import build_record

    data = mlrun.data
    metrics: dict[str, Any] = {k: data.metrics[k] for k in FINAL_SCALARS if k in data.metrics}
    for count in ("best_val_epoch", "val_falls"):
        if count in metrics:
            metrics[count] = int(metrics[count])
    metrics["task_acc"] = {
        k.split("/", 1)[1]: v for k, v in sorted(data.metrics.items()) if k.startswith("task_acc/")
    }
    epochs: dict[int, dict[str, Any]] = {}  # per-epoch values: every point at step >= 1
    for key in data.metrics:
        if key.startswith(("task_acc/", "time/")) or (key in FINAL_SCALARS and key != "val_acc"):
            continue  # logged once, at step 0
        for m in mlflow_client.get_metric_history(mlrun.info.run_id, key):
            if m.step >= 1:
                epochs.setdefault(m.step, {"epoch": m.step})[key] = m.value
    history = [epochs[e] for e in sorted(epochs)]
    if history and "val_acc" in history[-1]:
        metrics.setdefault("val_acc", history[-1]["val_acc"])
    keys = [k for k in (data.tags.get("teacher_keys") or "").split(",") if k]
    return build_record(
        run,
        "finished",
        metrics=metrics,
        history=history,
        teachers=[{"key": k} for k in keys],
        timings={k.split("/", 1)[1]: v for k, v in data.metrics.items() if k.startswith("time/")},
        device=data.tags.get("device"),
        mlflow_run_id=mlrun.info.run_id,
        rebuilt_from_mlflow=True,
    )
