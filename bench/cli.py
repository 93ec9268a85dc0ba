"""``python -m bench run|ls|table|power|tune|data``: thin commands over the harness modules,
and each study's own sub-commands, found in :mod:`bench.studies`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bench.core.errors import BenchError, StorageError


class Named:
    """argparse ``choices`` read from a registry only when asked (the option given, its
    help or usage shown), so that building the parser imports no plugin's module. Set on
    the action after ``add_argument``, which would otherwise list them at once."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self.names = names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.names()))

    def __contains__(self, value: object) -> bool:
        return value in list(self.names())


def launcher_names() -> list[str]:
    """``--launcher``: every module of bench.launch registering one (serial, process, ray, ...)."""
    from bench.launch.launchers import launcher_names as names

    return names()


def reference_names() -> list[str]:
    """``--reference``: the printed tables the studies register (bench/studies/<name>)."""
    from bench.report.published import reference_names as names
    from bench.studies import register_published

    register_published()
    return names()


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a suite (skips runs already finished)")
    p.add_argument("suite", type=Path, help="suite YAML, e.g. suites/quick.yaml")
    _add_overrides(p, "a dotted key, e.g. --set optim.epochs=5 --set methods.2.params.T=4")
    _add_results_device(p)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the suite's seeds")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    launcher = p.add_argument("--launcher", default="serial")
    launcher.choices = Named(launcher_names)  # set after: add_argument would list them now
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="runs at once for --launcher process (one GPU each, round-robin; packed when "
        "there are more workers than GPUs) and ray (the default --threads is cores / workers)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run, under every launcher (default: the suite's threads:, "
        "else this machine's cores, or $OMP_NUM_THREADS, shared among the runs at once)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        help="--launcher ray: GPUs per run, 0 < g <= 1 (default: the suite's gpus_per_run, 1)",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="time a few real training steps per (dataset, student, method) and print each "
        "run's steps and device-hours before anything runs",
    )
    _add_tracking(p)


def _add_overrides(p, what: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override {what}",
    )


def _add_results_device(p) -> None:
    p.add_argument("--results", type=Path, default=Path("results"), help="results root")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)


def _add_tracking(p) -> None:
    """Progress bars and MLflow: how a run or a study reports while it works."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI, "
        "else sqlite:///<results>/mlflow.db); see docs/tracking.md",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def _add_ls(sub) -> None:
    sub.add_parser("ls", help="list registered methods, datasets and models")


def _add_table(sub) -> None:
    p = sub.add_parser("table", help="aggregate a suite's results into a table")
    p.add_argument(
        "source",
        nargs="?",
        default=None,
        help="a suite results dir (results/<suite>); with --mlflow, optional: its parent is "
        "the results root of the default MLflow store",
    )
    p.add_argument(
        "--suite",
        type=Path,
        default=None,
        help="the suite file: leave out runs its current plan supersedes (a row whose "
        "params or recipe changed since they ran)",
    )
    _add_table_layout(p)
    _add_table_mlflow(p)
    p.add_argument(
        "--effects",
        action="store_true",
        help="instead of mean ± std: each row minus the baseline row, paired by seed, with "
        "its 95%% CI and the minimum detectable effect (MDE)",
    )
    _add_baseline(p)
    _add_select(p)


def _add_table_layout(p) -> None:
    """What the table shows and how it is written (:func:`_table_options`)."""
    p.add_argument("--format", choices=["markdown", "latex", "csv"], default="markdown")
    p.add_argument("--out", type=Path, default=None, help="write to this file (atomically)")
    p.add_argument("--per-task", action="store_true", help="T1..TN and Merge columns (Table 5)")
    reference = p.add_argument(
        "--reference",
        default=None,
        help="add a study's published numbers beside the rows: NAME = its first printed "
        "table, NAME:N = its Table N",
    )
    reference.choices = Named(reference_names)
    p.add_argument("--test", choices=["ttest", "wilcoxon"], default="ttest")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--caption", default=None)
    p.add_argument("--label", default=None)


def _add_table_mlflow(p) -> None:
    p.add_argument(
        "--mlflow",
        metavar="EXPERIMENT",
        default=None,
        help="read the finished runs of this MLflow experiment (= suite name) instead",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="with --mlflow: the store (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<results>/mlflow.db)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="with --mlflow and no source: results root of the default store (default: results)",
    )


def _add_baseline(p) -> None:
    p.add_argument(
        "--baseline",
        default=None,
        metavar="ROW",
        help="the row compared against (default: the suite's reference: row, else Vanilla KD)",
    )


def _add_select(p) -> None:
    p.add_argument(
        "--select",
        choices=["last", "best-val", "best-test"],
        default="last",
        help="each run's test accuracy at: its last epoch (default), its best-validation "
        "epoch, or its best-test epoch (optimistic: chosen on test; needs record_test_curve)",
    )


def _add_power(sub) -> None:
    p = sub.add_parser(
        "power", help="per row: paired sd against the baseline, MDE, and seeds a difference needs"
    )
    p.add_argument("source", type=Path, help="a suite results dir (results/<suite>)")
    p.add_argument(
        "--delta", type=float, required=True, help="difference to detect, in accuracy points"
    )
    _add_baseline(p)
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level")
    p.add_argument("--power", type=float, default=0.8, help="probability of detecting --delta")
    _add_select(p)


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune", help="Optuna search of a method's params on the validation split (never test)"
    )
    p.add_argument("tune_file", type=Path, help="tune YAML, e.g. suites/tune_quick.yaml")
    _add_overrides(p, "a dotted key of the tune file, e.g. --set budget.epochs=3")
    p.add_argument("--study", default=None, help="study name (default: the file's name)")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna database URL shared by workers (default: "
        "sqlite:///<results>/tune/<study>/optuna.db)",
    )
    p.add_argument("--n-trials", type=int, default=None, help="finished trials in the study")
    p.add_argument("--timeout", type=float, default=None, help="seconds for this invocation")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per trial run, in every worker (default: this machine's cores, "
        "or $OMP_NUM_THREADS, shared among the workers)",
    )
    _add_results_device(p)
    _add_tracking(p)
    p.add_argument("--dry-run", action="store_true", help="validate and describe the study only")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="check a dataset root against its official distribution")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser(
        "check",
        help="list a root's layout, its counts beside the official ones, missing files "
        "and (--decode) corrupt images",
    )
    c.add_argument("name", help="a dataset loader, e.g. stanford_dogs")
    c.add_argument(
        "root",
        nargs="?",
        default=None,
        help="the dataset's folder (default: what the loader uses, $KA_BENCH_DATA/<folder>)",
    )
    c.add_argument("--decode", action="store_true", help="open every image (slow)")
    c.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="with --decode: name corrupt images but pass, as the loader's skip_corrupt does",
    )
    c.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loader param that changes the lists, e.g. --param annotation_level=family",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="ka-bench: knowledge-amalgamation benchmark and ablation harness",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_ls(sub)
    _add_table(sub)
    _add_tune(sub)
    _add_power(sub)
    _add_data(sub)
    from bench.studies import register_commands  # each study's own (bench/studies/<name>)

    register_commands(sub)
    return parser


def cmd_run(args) -> int:
    from bench.core.config import load_suite

    suite = load_suite(args.suite, args.overrides)
    results = args.results.resolve()
    _check_run(args, suite, results)
    if args.dry_run:  # the plan's modules only: no model is built, nothing trained
        _print_plan(args, suite, results)
    if args.estimate:
        from bench.engine.runtime import configure_threads
        from bench.experiment.estimate import estimate_suite

        configure_threads()
        print(estimate_suite(suite, results, args.device, args.seeds).describe())
    if args.dry_run:
        return 0
    return _run(args, suite, results)


def _check_run(args, suite, results: Path) -> None:
    """Names, params, files, the results dir, MLflow and the options: everything that can
    be wrong fails before anything is written."""
    from bench.core.config import check_gpus_per_run
    from bench.core.errors import ConfigError
    from bench.engine.runtime import resolve_threads
    from bench.experiment.plan import expand
    from bench.experiment.preflight import check_suite

    try:
        expand(suite, args.seeds)
        check_suite(suite, results, None if args.no_mlflow else tracking_uri(results, args))
    except ConfigError as exc:
        raise ConfigError(f"{args.suite}: {exc}") from None
    if args.workers < 1:
        raise BenchError(f"--workers: must be at least 1, got {args.workers}")
    if args.gpus_per_run is not None:
        try:
            check_gpus_per_run(args.gpus_per_run)
        except ValueError as exc:
            raise BenchError(f"--gpus-per-run: {exc}") from None
    resolve_threads(args.threads, suite.threads)  # a bad count fails before anything runs


def _print_plan(args, suite, results: Path) -> None:
    """``--dry-run``: the runs (finished, to run, pending a study) and the studies."""
    from bench.core.store import RunStore
    from bench.experiment.dryrun import describe_plan
    from bench.experiment.plan import expand, finished_studies, plan_studies
    from bench.tune.suite_studies import describe_studies

    studies = plan_studies(suite)
    runs = expand(suite, args.seeds, tuned=finished_studies(studies, results))
    print(f"suite {suite.name}: {args.suite} -> {results / suite.name}")
    print(describe_plan(runs, RunStore(results / suite.name), results))
    for line in describe_studies(studies, results):
        print(line)


def _run(args, suite, results: Path) -> int:
    """Run the suite; print the counts and its table. 1 when any run failed."""
    from bench.core.progress import enabled as progress_enabled
    from bench.core.progress import set_enabled as set_progress
    from bench.engine.runtime import configure_threads
    from bench.launch.suite import run_suite

    configure_threads()
    set_progress(not args.no_progress)
    outcome = run_suite(
        suite,
        results,
        device=args.device,
        seeds=args.seeds,
        launcher=args.launcher,
        workers=args.workers,
        progress=progress_enabled(),
        mlflow=not args.no_mlflow,
        tracking_uri=args.tracking_uri,
        gpus_per_run=args.gpus_per_run,
        threads=args.threads,
    )
    held = f", {len(outcome.held)} skipped (held by another process)" if outcome.held else ""
    print(
        f"\n{len(outcome.ran)} run(s) done, {len(outcome.skipped)} skipped (already "
        f"finished){held}, {len(outcome.failed)} failed; results in {outcome.suite_dir}"
    )
    if outcome.table:
        print()
        print(outcome.table)
    return 1 if outcome.failed else 0


def tracking_uri(results: Path, args) -> str:
    from bench.tracking import resolve_tracking_uri

    return resolve_tracking_uri(results, args.tracking_uri)


def cmd_ls(args) -> int:
    from bench.core.models import MODELS
    from bench.data.datasets import DATASETS
    from bench.experiment.plugins import METHODS

    for title, reg in [("methods", METHODS), ("datasets", DATASETS), ("models", MODELS)]:
        print(f"{title}:")
        for name in reg.names():
            obj = reg.get(name)
            # a plugin's class may leave its description to its module's docstring
            text = obj.__doc__ or getattr(sys.modules.get(obj.__module__), "__doc__", None)
            doc = (text or "").strip().splitlines()
            print(f"  {name:16} {doc[0] if doc else ''}")
    return 0


def cmd_table(args) -> int:
    from bench import report

    if args.reference is not None:
        from bench.studies import register_published

        register_published()  # the studies' printed tables, for --reference

    try:
        if args.mlflow is not None:
            if args.effects or args.select != "last":
                raise BenchError(
                    "table: --effects and --select read result.json files, not --mlflow"
                )
            text = _mlflow_table(args, report)
        elif args.source is None:
            raise BenchError("table: give a suite results dir (results/<suite>) or --mlflow NAME")
        elif args.effects:
            text = _effects_table(args)
        else:
            text = report.render_table(
                args.source, planned=_planned(args), select=args.select, **_table_options(args)
            )
    except ValueError as exc:  # no finished runs, unknown experiment, bad option value
        raise BenchError(f"table: {exc}") from None
    if args.out is None:
        print(text)
    else:
        print(f"wrote {args.out}")
    return 0


def _table_options(args) -> dict:
    """The options every table takes: its layout, its test and how it is written."""
    return {
        "fmt": args.format,
        "out": args.out,
        "per_task": args.per_task,
        "reference": args.reference,
        "test": args.test,
        "alpha": args.alpha,
        "caption": args.caption,
        "label": args.label,
    }


def _planned(args) -> dict | None:
    """With ``--suite``: the run key of each cell of its current plan (tuned rows at their
    finished studies' points), so that superseded runs are left out."""
    if args.suite is None:
        return None
    from bench.core.config import load_suite
    from bench.experiment.plan import expand, finished_studies, plan_studies, planned_cells

    suite = load_suite(args.suite)
    tuned = finished_studies(plan_studies(suite), Path(args.source).parent)
    return planned_cells(expand(suite, tuned=tuned))


def _effects_table(args) -> str:
    """``bench table --effects``: paired differences to the baseline row."""
    from bench.report.effect_tables import effects_table

    if args.per_task or args.reference is not None or args.suite is not None:
        raise BenchError("table: --effects takes none of --per-task, --reference, --suite")
    shared = ("fmt", "out", "caption", "label", "alpha")  # no ranking test: CIs instead
    layout = {k: v for k, v in _table_options(args).items() if k in shared}
    return effects_table(args.source, baseline=args.baseline, select=args.select, **layout)


def cmd_power(args) -> int:
    from bench.report.effect_tables import power_table

    try:
        text = power_table(
            args.source,
            delta=args.delta,
            baseline=args.baseline,
            select=args.select,
            alpha=args.alpha,
            power=args.power,
        )
    except ValueError as exc:  # no finished runs, unknown baseline, bad --delta
        raise BenchError(f"power: {exc}") from None
    print(text)
    return 0


def _mlflow_table(args, report) -> str:
    """``bench table --mlflow EXPERIMENT``: the same table from MLflow child runs."""
    from bench.tracking import default_tracking_uri, resolve_tracking_uri

    results = args.results or (Path(args.source).parent if args.source else Path("results"))
    uri = resolve_tracking_uri(results, args.tracking_uri)
    if uri == default_tracking_uri(results) and not (results.resolve() / "mlflow.db").is_file():
        raise BenchError(f"table: no MLflow store at {uri} (give --tracking-uri or --results)")
    df = report.load_results_mlflow(args.mlflow, uri)
    failures = report.load_failures_mlflow(args.mlflow, uri)
    n_failed = len(failures)
    if df.empty:
        raise BenchError(f"table: no finished runs in MLflow experiment {args.mlflow!r} at {uri}")
    return report.render_frame(df, n_failed, failures=failures, **_table_options(args))


def cmd_tune(args) -> int:
    from bench.core.progress import enabled as progress_enabled
    from bench.core.progress import set_enabled as set_progress
    from bench.engine.runtime import configure_threads
    from bench.tune.check import load_tune
    from bench.tune.run import describe, tune

    _check_study_name(args.study)
    cfg = load_tune(args.tune_file, args.overrides)  # also the suite's pre-run checks
    _check_results(args)
    if args.dry_run:
        print(describe(cfg, args.results, args.study, args.storage))
        return 0
    _check_tune_options(args)
    configure_threads()
    set_progress(not args.no_progress)
    outcome = tune(
        cfg,
        args.results,
        study_name=args.study,
        storage=args.storage,
        n_trials=args.n_trials,
        timeout=args.timeout,
        device=args.device,
        workers=args.workers,
        mlflow=not args.no_mlflow,
        tracking_uri=args.tracking_uri,
        progress=progress_enabled(),
        threads=args.threads,
    )
    return _print_tuned(outcome)


def _check_study_name(study: str | None) -> None:
    from bench.core.config import safe_name

    if study is not None:
        try:
            safe_name(study)
        except ValueError as exc:
            raise BenchError(f"--study: {exc} (got {study!r})") from None


def _check_results(args) -> None:
    """The results root is writable and, unless ``--no-mlflow``, the MLflow store usable."""
    from bench.experiment.preflight import check_tracking, check_writable

    results = args.results.resolve()
    check_writable(results)
    if not args.no_mlflow:
        check_tracking(tracking_uri(results, args))


def _check_tune_options(args) -> None:
    if args.n_trials is not None and args.n_trials < 1:
        raise BenchError("--n-trials: must be at least 1")
    if args.workers < 1:
        raise BenchError("--workers: must be at least 1")
    if args.threads is not None:
        from bench.engine.runtime import check_threads

        check_threads(args.threads, "--threads")


def _print_tuned(outcome) -> int:
    """The study's counts and its best point; 1 when no trial completed."""
    c = outcome.counts
    print(
        f"\nstudy {outcome.study.study_name}: {outcome.ran} trial(s) run now; "
        f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed in total"
    )
    if outcome.best is None:
        print("no completed trial yet: no best.yaml")
        return 1
    best = outcome.best
    print(f"best: trial {best['trial']}, val acc {best['value']:.4f}, {best['searched']}")
    print(f"wrote {outcome.out_dir / 'best.yaml'} (use it with params_from:)")
    return 0


def cmd_data(args) -> int:
    import yaml

    from bench.data.check import check_data

    params = {}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--param: expected KEY=VALUE, got {item!r}")
        params[key] = yaml.safe_load(value)
    check_data(args.name, args.root, params, decode=args.decode, skip_corrupt=args.skip_corrupt)
    return 0


COMMANDS = {
    "run": cmd_run,
    "ls": cmd_ls,
    "table": cmd_table,
    "tune": cmd_tune,
    "power": cmd_power,
    "data": cmd_data,
}  # and each study's sub-commands, by their parsers' handler (bench.studies)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(args)
    except StorageError as exc:  # full disk, read-only results: not a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BenchError, KeyError, ValueError, OSError) as exc:
        from bench.core.registry import UnknownNameError
        from bench.data.datasets import DatasetError

        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
        if not isinstance(exc, BenchError | DatasetError | UnknownNameError | FileNotFoundError):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
