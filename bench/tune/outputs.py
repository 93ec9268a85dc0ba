"""The files of a tune study in ``<results>/tune/<study>/``: ``best.yaml`` (a suite entry
takes it with ``params_from:``), ``trials.csv``, ``top.md`` and the PNG plots, each
written atomically."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from bench.core.atomic import atomic_write_bytes, atomic_write_text
from bench.tune.job import TuneJob, trial_runs
from bench.tune.study import ENDED, trial_counts

log = logging.getLogger(__name__)


def best_record(job: TuneJob, study: optuna.Study) -> dict[str, Any] | None:
    """What ``best.yaml`` holds: the best trial's full method params (``params``, which a
    suite entry takes with ``params_from``), the searched subset and where it came from."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    cfg = job.cfg
    params = best.user_attrs.get("method_params")
    if params is None:  # a trial from another tool: rebuild from its params
        params = trial_runs(cfg, dict(best.params))[0].spec.params
    counts = trial_counts(study, ENDED)
    return {
        "study": job.study,
        "method": cfg.base.method.name,
        "params": params,
        "searched": dict(best.params),
        "value": best.value,
        "objective": (
            f"{cfg.objective.metric} ({cfg.objective.epoch} epoch of {cfg.epochs}), "
            f"mean over seeds {cfg.seeds}; validation split carved from the training images"
        ),
        "values_per_seed": best.user_attrs.get("values_per_seed"),
        "trial": best.number,
        "trials": counts,
        "dataset": cfg.base.dataset.column,
    }


def write_outputs(job: TuneJob, study: optuna.Study, top: int = 10) -> dict[str, Any] | None:
    """best.yaml, trials.csv, top.md and the plots (each written atomically)."""
    out = job.out_dir
    df = study.trials_dataframe()
    if len(df):
        atomic_write_text(out / "trials.csv", df.to_csv(index=False))
        cols = [c for c in df.columns if c in ("number", "value", "state", "duration")]
        cols += [c for c in df.columns if c.startswith("params_")]
        complete = df[df["state"] == "COMPLETE"].sort_values("value", ascending=False)
        table = complete[cols].head(top).copy()
        if "duration" in table:
            table["duration"] = table["duration"].dt.total_seconds().round(1)
        table.columns = [c.removeprefix("params_") for c in table.columns]
        text = f"# {job.study}: top {len(table)} of {len(df)} trials (val accuracy)\n\n"
        atomic_write_text(out / "top.md", text + table.to_markdown(index=False) + "\n")
    best = best_record(job, study)
    if best is not None:
        header = (
            f"# Best params of tune study {job.study!r} (python -m bench tune).\n"
            f"# Use in a suite: methods: [{{name: {best['method']}, "
            f"params_from: {out / 'best.yaml'}}}]\n"
        )
        body = yaml.safe_dump(best, sort_keys=False)
        atomic_write_text(out / "best.yaml", header + body)
    write_plots(study, out)
    return best


def write_plots(study: optuna.Study, out: Path) -> list[str]:
    """history.png, importances.png, parallel.png; a plot that cannot be drawn (too few
    completed trials, nothing varies) is skipped with a note in the log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = [
        name
        for name in {k for t in complete for k in t.params}
        if len({repr(t.params.get(name)) for t in complete}) > 1
    ]
    plots = {
        "history.png": (ovm.plot_optimization_history, len(complete) >= 1),
        "importances.png": (ovm.plot_param_importances, len(complete) >= 2 and bool(varying)),
        "parallel.png": (ovm.plot_parallel_coordinate, len(complete) >= 1),
    }
    written = []
    for name, (plot, possible) in plots.items():
        if not possible:
            log.info("tune: %s skipped (needs more completed trials / a varying param)", name)
            (out / name).unlink(missing_ok=True)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if isinstance(ax, np.ndarray) else ax).figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            plt.close(fig)
            atomic_write_bytes(out / name, buf.getvalue())
            written.append(name)
        except Exception as exc:  # a plot is a nice-to-have; the study's data is saved
            log.warning("tune: %s not drawn: %s", name, exc)
            plt.close("all")
    return written
