"""Extensions plug in as one new file or folder, with no edit to the framework: a launcher
module in bench/launch/, a study package in bench/studies/, a suite tracker given to
run_suite (docs/architecture.md)."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import bench.launch
from bench.cli import build_parser, main
from bench.core.config import validate_suite
from bench.core.store import RunStore
from bench.launch import launchers
from bench.launch.suite import run_suite
from bench.tracking import SuiteTracker, Tracker, TrackingTarget
from tests.conftest import tiny_suite, write_suite

INLINE_LAUNCHER = '''
"""A launcher a newcomer adds: one module, registered by name."""

from bench.launch.launchers import launcher

CALLS = []


@launcher("inline")
def run_inline(runs, options, slots):
    from bench.launch.local import execute_safely

    for run in runs:
        CALLS.append(run.key)
        yield run, execute_safely(run, options)
'''


def test_a_new_launcher_module_is_a_cli_choice_and_runs_a_suite(tmp_path: Path, monkeypatch):
    package = tmp_path / "launch_ext"
    package.mkdir()
    (package / "inline_probe.py").write_text(textwrap.dedent(INLINE_LAUNCHER))
    # a copy of the registry first: the probe registers itself into it, not the real one
    monkeypatch.setattr(launchers, "LAUNCHERS", dict(launchers.load_launchers()))
    monkeypatch.setattr(bench.launch, "__path__", [*bench.launch.__path__, str(package)])
    launchers.load_launchers()
    try:
        run = build_parser()._subparsers._group_actions[0].choices["run"]
        (choice,) = [a for a in run._actions if a.dest == "launcher"]
        assert list(choice.choices) == ["serial", "process", "ray", "inline"]
        assert "--launcher {serial,process,ray,inline}" in run.format_help()
        suite = write_suite(tmp_path / "s.yaml", tiny_suite(methods=[{"name": "teacher"}]))
        code = main(["run", str(suite), "--launcher", "inline", "--no-mlflow", "--no-progress",
                     "--results", str(tmp_path / "results")])  # fmt: skip
        assert code == 0
        calls = sys.modules["bench.launch.inline_probe"].CALLS
        assert len(calls) == 2  # the teacher row: one run per teacher task
        store = RunStore(tmp_path / "results" / "tiny")
        assert all(store.is_finished(key) for key in calls)
    finally:
        sys.modules.pop("bench.launch.inline_probe", None)


class FakeTracker:
    """A suite tracker that is not MLflow: it keeps what run_suite hands it."""

    opened: list[FakeTracker] = []

    def __init__(self, suite_name, results_root, tracking_uri, params):
        self.suite_name, self.params = suite_name, params
        self.target = None  # the runs' processes log nothing: records arrive here
        self.reconciled, self.records, self.closed = [], {}, []
        FakeTracker.opened.append(self)

    def reconcile(self, runs, store, out=None):
        self.reconciled = [r.key for r in runs]

    def record_done(self, run, record):
        self.records[run.key] = record

    def close(self, status, counts=None, artifacts=(), error=None, base=None):
        self.closed.append((status, counts, error))


def test_a_tracker_implementing_the_protocol_receives_the_suites_runs(tmp_path: Path):
    FakeTracker.opened.clear()
    suite = validate_suite(tiny_suite(methods=[{"name": "teacher"}]), "t")
    outcome = run_suite(suite, tmp_path, progress=False, out=io.StringIO(), tracker=FakeTracker)
    (tracker,) = FakeTracker.opened
    assert isinstance(tracker, Tracker)
    assert tracker.suite_name == "tiny" and tracker.params["launcher"] == "serial"
    assert sorted(tracker.reconciled) == sorted(tracker.records) == sorted(outcome.ran)
    assert all(rec.finished for rec in tracker.records.values())
    assert tracker.closed == [("FINISHED", {"total": 2, "ran": 2, "skipped": 0, "failed": 0}, None)]
    assert not (tmp_path / "mlflow.db").exists()  # MLflow was never opened


def test_the_mlflow_suite_tracker_is_a_tracker(tmp_path: Path):
    target = TrackingTarget("sqlite:///x.db", "1", "parent", "owner", "tiny")
    assert isinstance(SuiteTracker(target, tmp_path), Tracker)


PROBE_STUDY = '''
"""A study a newcomer adds: one package, its own sub-command and printed table."""

import pandas as pd

from bench.report.published import Publication, PublishedTable, register


def register_commands(sub):
    p = sub.add_parser("hello", help="greet from the probe study")
    p.add_argument("name")
    p.set_defaults(handler=hello)


def hello(args):
    print(f"hello {args.name} from the probe study")
    return 0


def register_published():
    table = lambda n: PublishedTable(pd.DataFrame(), f"Table {n} of the probe")  # noqa: E731
    register(Publication("probe", (3,), table))
'''


def test_a_new_study_package_adds_its_own_sub_command(tmp_path: Path, monkeypatch, capsys):
    import bench.studies
    from bench.report import published

    (tmp_path / "probe_study").mkdir()
    (tmp_path / "probe_study" / "__init__.py").write_text(PROBE_STUDY)
    monkeypatch.setattr(bench.studies, "__path__", [*bench.studies.__path__, str(tmp_path)])
    monkeypatch.setattr(published, "_PUBLICATIONS", dict(published._PUBLICATIONS))
    try:
        assert main(["hello", "newcomer"]) == 0
        assert capsys.readouterr().out == "hello newcomer from the probe study\n"
        table = build_parser()._subparsers._group_actions[0].choices["table"]
        assert "--reference {paper,paper:2,paper:5,probe,probe:3}" in table.format_help()
    finally:
        sys.modules.pop("bench.studies.probe_study", None)


def test_ls_describes_every_method_dataset_and_model(capsys):
    """`bench ls` gives each registered plugin a description: its class docstring, else its
    module's first line (plugins document themselves at the top of their one file)."""
    from bench.cli import main as cli_main

    assert cli_main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = [line.split(maxsplit=1) for line in lines if line.startswith("  ")]
    assert {"dkd", "layerwise", "vanilla_kd", "digits", "small_cnn"} <= {e[0] for e in entries}
    assert all(len(e) == 2 and e[1].strip() for e in entries), [e for e in entries if len(e) < 2]
    assert dict(entries)["vanilla_kd"].startswith("Vanilla KD: the student mimics")
