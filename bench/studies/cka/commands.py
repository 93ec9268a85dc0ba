"""``python -m bench readings|verdict``: the study's sub-commands, added to the CLI by
:func:`register_commands` (found through :mod:`bench.studies`). Building the parsers
imports nothing of the study; each command imports its page's module when it runs."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import BenchError


def register_commands(sub) -> None:
    _add_readings(sub)
    _add_verdict(sub)


def _add_readings(sub) -> None:
    p = sub.add_parser(
        "readings",
        help="render the reproduction study (docs/reproduction.md) from a finished readings suite",
    )
    p.add_argument("source", type=Path, help="the study's results dir, e.g. results/readings")
    p.add_argument(
        "--out", type=Path, default=None, help="write here (atomically), e.g. docs/reproduction.md"
    )
    p.add_argument(
        "--suite",
        type=Path,
        default=None,
        help="only the runs of this suite file's current plan (e.g. suites/readings.yaml): "
        "runs of an earlier default left in the directory are ignored",
    )
    p.set_defaults(handler=cmd_readings)


def _add_verdict(sub) -> None:
    p = sub.add_parser(
        "verdict",
        help="render the verdict page (docs/verdict.md) from a finished verdict study",
    )
    p.add_argument("source", type=Path, help="the study's results dir, e.g. results/verdict_cpu")
    p.add_argument("--suite", type=Path, required=True, help="its suite file")
    p.add_argument("--out", type=Path, default=Path("docs/verdict.md"), help="the page")
    p.add_argument("--candidate", default="CKA (tuned)", help="the row whose claim is judged")
    p.add_argument("--baseline", default="Vanilla KD (tuned)", help="the row it must beat")
    p.set_defaults(handler=cmd_verdict)


def cmd_readings(args) -> int:
    from bench.studies.cka.reproduction import plan_keys, render, write

    keys = plan_keys(args.suite) if args.suite is not None else None
    try:
        if args.out is None:
            print(render(args.source, keys))
        else:
            print(f"wrote {write(args.source, args.out, keys)}")
    except ValueError as exc:  # no finished runs
        raise BenchError(f"readings: {exc}") from None
    return 0


def cmd_verdict(args) -> int:
    from bench.studies.cka.verdict import write

    if not args.source.is_dir():
        raise BenchError(f"verdict: {args.source}: no such results directory")
    try:
        path = write(
            args.source, args.suite, args.out, candidate=args.candidate, baseline=args.baseline
        )
    except ValueError as exc:  # no finished runs, unknown row
        raise BenchError(f"verdict: {exc}") from None
    print(f"wrote {path}")
    return 0
