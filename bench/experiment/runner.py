"""Execute one planned run: data -> teachers -> method -> fit -> evaluate -> record."""

from __future__ import annotations

import time
import traceback
from typing import Any

from bench.core.keys import file_sha256
from bench.core.method import Method, MethodContext
from bench.core.models import build_model, load_pretrained
from bench.core.record import RunRecord
from bench.core.specs import PlannedRun
from bench.core.weights import announce
from bench.data.prepare import PreparedData, prepare
from bench.engine.checkpoint import Checkpoint
from bench.engine.evaluate import evaluate
from bench.engine.health import longest_fall
from bench.engine.options import ExecOptions
from bench.engine.pretrain import class_overlap, get_backbone, load_backbone
from bench.engine.runtime import apply_threads, seed_everything
from bench.engine.teachers import get_teacher
from bench.engine.train import EpochCallback, FitResult, epoch_steps, fit
from bench.experiment.plugins import METHODS


def execute(
    run: PlannedRun,
    options: ExecOptions,
    callbacks: list[EpochCallback] = (),
    checkpoint: Checkpoint | None = None,
) -> RunRecord:
    """Run one RunSpec to completion and return its finished record (raises on failure).

    ``options`` (:class:`~bench.engine.options.ExecOptions`): ``with_test=False`` (tuning): the
    test split is never loaded or evaluated, the record has validation metrics only;
    ``speed``: the suite's GPU speed switches (:mod:`bench.engine.speed`), for the teachers and
    the student, and the record's ``speed`` says what they resolved to on the device.
    ``checkpoint``: resume the student's training from it and save to it
    (:mod:`bench.engine.checkpoint`); the record says ``resumed_from_epoch``. The run executes at
    ``options.threads`` torch threads (every launcher alike; ``env.threads`` says so)."""
    apply_threads(options.threads)
    how = options.fit_options()  # resolves the device, once
    spec = run.spec
    t0 = time.perf_counter()
    data = prepare(spec.dataset_config(), with_test=options.with_test)
    backbone, pretrain_meta = pretrained_backbone(spec, data, options)
    teachers, teacher_meta = frozen_teachers(spec, data, options)
    t_teachers = time.perf_counter() - t0
    generator = seed_everything(spec.seed)  # after the teachers: their training seeds itself
    loads: list = []  # the student's pretrained-file reports (bench.core.weights)
    method = build_method(spec, data, teachers, backbone, loads, who=student_label(run))
    method = method.to(how.device)
    fitted = None
    if method.trains:
        observe = test_curve(data, how.device, how.num_workers) if options.test_curve else None
        fitted = fit(method, data.train, data.val, data.views, spec.optim, generator, how,
                     callbacks=callbacks, desc=f"{run.meta.row} s{spec.seed}",
                     checkpoint=checkpoint, observe=observe)  # fmt: skip
    method.eval()
    split = data.split_plan()
    return RunRecord.for_run(
        run,
        "finished",
        metrics=score(method, data, fitted, how.device, how.num_workers),
        history=fitted.history if fitted else [],
        teachers=teacher_meta,
        tasks_resolved=split.tasks(),
        split_sizes=split.sizes(),
        **({"pretrain": pretrain_meta} if pretrain_meta else {}),
        **({"pretrained": loads[-1].as_dict()} if loads else {}),
        timings=timings(fitted, t_teachers, t0),
        device=str(how.device),
        speed=how.plan().describe(),
        resumed_from_epoch=fitted.resumed_from_epoch if fitted else None,
    )


def timings(fitted: FitResult | None, t_teachers: float, t0: float) -> dict[str, Any]:
    """The record's seconds: teachers (loaded or trained), the student's training and
    compile (None: not compiled), and the run's total since ``t0``."""
    return {
        "teachers": t_teachers,
        "train": fitted.train_time if fitted else 0.0,
        "compile": fitted.compile_time if fitted else None,
        "total": time.perf_counter() - t0,
    }


def pretrained_backbone(spec, data: PreparedData, options: ExecOptions):
    """The pretrain stage's backbone file (trained first if missing) and what the record
    says of it; ``(None, None)`` for a run from scratch."""
    if spec.pretrain is None:
        return None, None
    backbone, meta = get_backbone(spec.pretrain, options)
    return backbone, {
        "key": spec.pretrain.key,
        "cached": meta["cached"],
        "test_acc": meta["test_acc"],
        "overlap_classes": class_overlap(meta, spec.dataset, data.layout.class_names),
    }


def frozen_teachers(spec, data: PreparedData, options: ExecOptions):
    """One frozen teacher per task (cached or trained first) and what the record says of
    each: its key, the sha256 of the ``teacher.pt`` loaded, its own-class test accuracy
    and, for a teacher initialised from a ``pretrained:`` file, that file's sha256."""
    teachers, meta_out = [], []
    for tspec in spec.teacher_specs(len(data.layout.tasks)):
        model, meta = get_teacher(tspec, data, options)
        teachers.append(model)
        entry = {
            "key": tspec.key,
            "arch": tspec.arch,
            "cached": meta["cached"],
            "test_acc_own_classes": meta["test_acc_own_classes"],
            "weights_sha256": meta.get("weights_sha256"),
        }
        if tspec.pretrained:  # the content its key hashes
            entry["pretrained_sha256"] = file_sha256(tspec.pretrained)
        meta_out.append(entry)
    return teachers, meta_out


def student_label(run: PlannedRun) -> str:
    return f"student ({run.meta.row} | {run.meta.column} | seed {run.meta.seed})"


def build_method(
    spec, data: PreparedData, teachers, backbone, loads: list | None = None, who: str = "student"
) -> Method:
    """The run's method plugin with its validated params, over a student built on demand
    (initialised from ``backbone`` when the run has a pretrain stage, or from its
    ``pretrained:`` file: the load line is printed and its report appended to ``loads``)."""

    def build_student():
        model = build_model(
            spec.student.arch,
            num_classes=data.layout.num_classes,
            in_channels=data.channels,
            image_size=data.image_size,
            **spec.student.params,
        )
        if spec.student.pretrained:
            report = load_pretrained(model, spec.student.pretrained, spec.student.arch)
            announce(who, report)
            if loads is not None:
                loads.append(report)
        if backbone is not None:
            load_backbone(model, backbone)
        return model

    cls = METHODS.get(spec.method)
    ctx = method_context(spec, data, teachers, build_student)
    return cls(ctx, cls.Params.model_validate(spec.params))


def method_context(spec, data: PreparedData, teachers, build_student) -> MethodContext:
    """The context a run's method is built with (here and in the estimate's probes):
    its teachers, the union layout, the student factory and the run's length."""
    optim = spec.optim  # None: a row that does not train
    return MethodContext(
        teachers=teachers,
        task_sizes=data.layout.sizes,
        build_student=build_student,
        channels=data.channels,
        image_size=data.image_size,
        train_size=len(data.train),
        epochs=optim.epochs if optim else 0,
        steps_per_epoch=epoch_steps(len(data.train), optim.batch_size) if optim else 0,
    )


def test_curve(data: PreparedData, device, num_workers: int):
    """The per-epoch test accuracy (``curve_test_acc``) of ``record_test_curve``: a
    figure for ``bench table --select best-test`` only, never read by training or
    selection; None where the run has no test split (tuning)."""
    if data.test is None:
        return None

    def observe(method: Method) -> dict[str, Any]:
        acc = evaluate(method.predict, data.test, data.views, None, device, num_workers)["acc"]
        return {"curve_test_acc": acc}

    return observe


def score(method: Method, data: PreparedData, fitted, device, num_workers: int) -> dict[str, Any]:
    """Test accuracy (union and per task) of the final weights; with a val split also the
    last and best val accuracy, the val curve's longest fall and the test accuracy of
    the best-val weights (selection on val only, never on test)."""
    metrics: dict[str, Any] = {}
    if data.test is not None:
        test = evaluate(method.predict, data.test, data.views, data.layout, device, num_workers)
        metrics.update(test_acc=test["acc"], task_acc=test["task_acc"])
    if data.val is not None and len(data.val):
        if fitted is not None and fitted.best_state is not None:
            metrics["val_acc"] = fitted.history[-1].get("val_acc")
            metrics["best_val_acc"] = fitted.best_val_acc
            metrics["best_val_epoch"] = fitted.best_val_epoch
            falls = longest_fall([h.get("val_acc") for h in fitted.history])
            metrics["val_falls"], metrics["val_fall_drop"] = falls
            if data.test is not None:
                method.load_state_dict(fitted.best_state)
                best = evaluate(method.predict, data.test, data.views, data.layout, device)
                metrics["test_acc_at_best_val"] = best["acc"]
        else:
            metrics["val_acc"] = evaluate(method.predict, data.val, data.views, None, device)["acc"]
    return metrics


def failure_record(run: PlannedRun, exc: BaseException) -> RunRecord:
    """A failed run's record: status ``failed`` and why (one line + the traceback)."""
    return RunRecord.for_run(
        run,
        "failed",
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
    )
