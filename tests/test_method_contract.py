"""The method-plugin contract, checked for every registered method on tiny random teachers
of different widths and output sizes (heterogeneous teachers), plus the amalgamation
family's promises: weight-0 terms are never computed, frozen teachers get no gradient, and
the common-space blocks agree in shape across heterogeneous models. The widened contract
(sample indices, epoch, step, training-set size, parameter groups, ``on_step_end``,
intermediate stages) is exercised by a plugin defined here through the real loop, and by
the plugins that need it: ``hint_kd`` and CFL's reference recipe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from bench.core.config import OptimConfig, validate_suite
from bench.core.models import build_model, small_cnn
from bench.data.datasets.base import AugmentDefaults, TensorImages
from bench.data.views import Views
from bench.engine.options import ExecOptions
from bench.engine.speed import SpeedPlan
from bench.engine.train import FitOptions, fit, make_training
from bench.experiment.plan import expand
from bench.experiment.runner import execute
from methods import METHODS, Batch, Method, MethodContext, NoParams
from methods.amalgamation import Amalgamation
from methods.common_space import build_common_space
from methods.readings import PRESETS, READING_OPTIONS
from tests.conftest import tiny_suite

PX = 8  # input size; the models below end at different spatial sizes on it
TASKS = [3, 2]  # classes per teacher; the union has 5


def make_teachers() -> list:
    """Two frozen teachers: 4x4 maps with 16 channels, 8x8 maps with 24 channels."""
    torch.manual_seed(0)
    teachers = [
        small_cnn(TASKS[0], in_channels=1, image_size=8, width=4),  # 16 ch, 4x4 at 8 px
        small_cnn(TASKS[1], in_channels=1, image_size=4, width=6),  # 24 ch, 8x8 at 8 px
    ]
    for t in teachers:
        t.eval()  # requires_grad left on: no_grad in the plugin must be what keeps them frozen
    return teachers


def make_ctx(teachers=None, **run) -> MethodContext:
    """``run``: train_size, epochs, steps_per_epoch."""
    teachers = teachers if teachers is not None else make_teachers()
    return MethodContext(
        teachers=teachers,
        task_sizes=TASKS,
        # 12 channels at 2x2 on 8 px input: differs from both teachers
        build_student=lambda: small_cnn(sum(TASKS), in_channels=1, image_size=16, width=3),
        channels=1,
        image_size=PX,
        **run,
    )


def build(name: str, teachers=None, run=None, **params):
    cls = METHODS.get(name)
    return cls(make_ctx(teachers, **(run or {})), cls.Params(**params))


def tiny_data(n: int = 8) -> TensorImages:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, PX, PX), dtype=torch.uint8, generator=g)
    return TensorImages(images, torch.arange(n) % sum(TASKS))


VIEWS = Views(AugmentDefaults(image_size=PX), load_size=PX, mean=(0.5,), std=(0.25,))


def nonzero(method) -> set[str]:
    return {k for k, w in method.weights().items() if w != 0}


# ------------------------------------------------------------------- every method


#: params a method needs to stand alone (a ``teacher`` entry without ``index`` is a fan-out
#: that the planner turns into one row per teacher: TeacherRow.rows)
ALONE = {"teacher": {"index": 0}}


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_one_step_and_predicts_the_union(name):
    teachers = make_teachers()
    method = build(name, teachers, **ALONE.get(name, {}))
    cls = type(method)
    x = VIEWS.test(tiny_data().images)
    if cls.trains:
        result = fit(
            method,
            train=tiny_data(),
            val=None,
            views=VIEWS,
            optim=OptimConfig(epochs=1, batch_size=8, lr=1e-3),
            generator=torch.Generator().manual_seed(0),
            how=FitOptions(torch.device("cpu"), progress=False),
        )
        (record,) = result.history
        logged = {k.removeprefix("loss/") for k in record if k.startswith("loss/")}
        assert logged == nonzero(method) and logged
        assert all(torch.isfinite(torch.tensor(record[f"loss/{k}"])) for k in logged)
        # compute_terms directly: exactly the non-zero-weight terms, finite scalars
        method.train()
        batch = Batch(x1=x, x2=x.flip(3) if method.needs_second_view else None)
        if cls.uses_labels:
            batch.y = torch.arange(len(x)) % sum(TASKS)
        terms = method.compute_terms(batch)
        assert set(terms) == nonzero(method)
        for k, v in terms.items():
            assert v.ndim == 0 and torch.isfinite(v), k
    for t in teachers:
        assert all(p.grad is None for p in t.parameters())
    teacher_ids = {id(p) for t in teachers for p in t.parameters()}
    assert not teacher_ids & {id(p) for p in method.parameters()}
    method.eval()
    with torch.no_grad():
        logits = method.predict(x)
    assert logits.shape == (len(x), sum(TASKS))


@pytest.mark.parametrize("name", METHODS.names())
def test_params_forbid_unknown_keys(name):
    with pytest.raises(ValidationError):
        METHODS.get(name).Params(no_such_param=1)


# ------------------------------------------------------- the amalgamation family


EXPECTED_DEFAULTS = {  # methods.md method table: (intra, inter, align, std, rec), space
    # (the CKA family's default reading has no L_rec, as Eq. 12 -- methods/readings.py)
    "cka_intra": ((1, 0, 10, 1, 0), "mlp", "CKA-Intra"),
    "cka_inter": ((0, 1, 10, 1, 0), "mlp", "CKA-Inter"),
    "cka": ((1, 1, 10, 1, 0), "mlp", "CKA"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULTS))
def test_amalgamation_defaults_follow_the_method_table(name):
    cls = METHODS.get(name)
    assert issubclass(cls, Amalgamation)
    weights, space, display = EXPECTED_DEFAULTS[name]
    p = cls.Params()
    assert (p.lambda_intra, p.lambda_inter, p.lambda_align, p.lambda_std, p.lambda_rec) == weights
    assert p.common_space == space and cls.display == display
    assert (p.alpha, p.distance, p.tau, p.T, p.sigmas) == (0.4, "euclidean", 1.0, 1.0, None)
    # every reading option comes from the family's `default` preset
    assert p.reading == "default"
    assert {k: getattr(p, k) for k in READING_OPTIONS} == PRESETS["default"]
    expected = {
        "lambda_intra", "lambda_inter", "lambda_align", "lambda_std", "lambda_rec", "alpha",
        "distance", "tau", "direction", "T", "sigmas", "common_space", "reading",
        "intra_negatives", "inter_negatives", "inter_normalize", "self_mask", "kernels",
        "align_normalize", "rec_target", "std_reduction",
    }  # fmt: skip
    assert set(cls.Params.model_fields) == expected


def test_cfl_has_its_own_params_with_the_reference_codes_defaults():
    """methods.md: CFL = L_std + 10 L_align + 10 L_rec on the cfl block; the readings it
    shares with the CKA family default to the CFL reference code's."""
    cls = METHODS.get("cfl")
    p = cls.Params()
    assert (p.lambda_std, p.lambda_align, p.lambda_rec) == (1, 10, 10)
    assert (p.common_space, p.recipe, p.T, p.sigmas) == ("cfl", "harness", 1.0, None)
    assert cls.display == "CFL"
    reference = PRESETS["cfl-reference"]
    for option in ("kernels", "align_normalize", "std_reduction", "direction", "lambda_rec"):
        assert getattr(p, option) == reference[option], option
    assert set(cls.Params.model_fields) == {
        "lambda_align", "lambda_std", "lambda_rec", "T", "direction", "std_reduction",
        "kernels", "align_normalize", "sigmas", "common_space", "recipe",
    }  # fmt: skip
    with pytest.raises(ValidationError, match="alpha"):  # a CKA-only param is now an error
        cls.Params(alpha=0.4)
    with pytest.raises(ValidationError, match="L_rec alone"):
        cls.Params(lambda_align=0, lambda_std=0)


def test_all_weights_zero_is_an_error():
    zero = {f"lambda_{k}": 0 for k in ("intra", "inter", "align", "std", "rec")}
    with pytest.raises(ValidationError, match="at least one term"):
        METHODS.get("cka").Params(**zero)


class Calls:
    """Counts forward calls of modules (by label) through forward hooks."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def watch(self, label: str, module) -> None:
        if module is None:
            return

        def hook(*_):
            self.n[label] = self.n.get(label, 0) + 1

        module.register_forward_hook(hook)

    def __getitem__(self, label: str) -> int:
        return self.n.get(label, 0)


def step_counts(**params) -> tuple[Calls, set[str], object]:
    method = build("cka", **params)
    calls = Calls()
    calls.watch("student", method.student)
    calls.watch("teacher", method.teachers[0])
    calls.watch("head", method.head)
    if method.common is not None:
        calls.watch("student_adapter", method.common.adapters[0])
        for i, dec in enumerate(method.common.decoders):
            calls.watch(f"decoder{i}", dec)
        calls.watch("shared", getattr(method.common, "mlp", None))
    x = VIEWS.train(tiny_data().images)
    x2 = VIEWS.train(tiny_data().images) if method.needs_second_view else None
    method.train()
    terms = method.compute_terms(Batch(x1=x, x2=x2))
    sum(terms.values()).backward()
    return calls, set(terms), method


def test_full_cka_runs_every_part():
    calls, terms, method = step_counts(lambda_rec=10)
    assert method.needs_second_view
    assert terms == {"intra", "inter", "align", "std", "rec"}
    assert calls["student"] == 2 and calls["head"] == 2 and calls["teacher"] == 1
    assert calls["student_adapter"] == 1 and calls["decoder0"] == calls["decoder1"] == 1
    assert calls["shared"] == 1  # every model's pooled feature through the MLP as one batch


def test_intra_off_skips_the_second_view_and_the_projection_head():
    calls, terms, method = step_counts(lambda_intra=0)
    assert not method.needs_second_view and method.head is None
    assert "intra" not in terms
    assert calls["student"] == 1 and calls["head"] == 0


def test_intra_only_runs_no_teacher():
    off = {f"lambda_{k}": 0 for k in ("inter", "align", "std", "rec")}
    calls, terms, method = step_counts(**off)
    assert terms == {"intra"} and calls["teacher"] == 0 and method.common is None


def test_sigmas_from_yaml_lists_are_used_by_align():
    p = METHODS.get("cka").Params(sigmas=[0.5, 1.0])
    assert p.sigmas == (0.5, 1.0) and p.model_dump(mode="json")["sigmas"] == [0.5, 1.0]


def test_align_and_rec_off_build_no_common_space():
    calls, terms, method = step_counts(lambda_align=0, lambda_rec=0)
    assert method.common is None and terms == {"intra", "inter", "std"}
    assert not any(name.startswith("common") for name, _ in method.named_parameters())


def test_rec_off_runs_no_decoder_and_align_off_no_student_adapter():
    calls, terms, _ = step_counts(lambda_rec=0)
    assert "rec" not in terms and calls["decoder0"] == calls["decoder1"] == 0
    assert calls["student_adapter"] == 1
    calls, terms, _ = step_counts(lambda_align=0, lambda_rec=10)
    assert "align" not in terms and calls["student_adapter"] == 0
    assert calls["decoder0"] == calls["decoder1"] == 1


def test_common_space_parts_are_trainable_and_teachers_get_no_gradient():
    teachers = make_teachers()
    method = build("cka", teachers, lambda_rec=10)
    x = VIEWS.train(tiny_data().images)
    terms = method.compute_terms(Batch(x1=x, x2=x.flip(3)))
    sum(terms.values()).backward()
    for name, p in method.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    assert all(p.grad is None for t in teachers for p in t.parameters())


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "mmd"])
def test_inter_distances_on_heterogeneous_maps(distance):
    method = build("cka_inter", distance=distance)
    x = VIEWS.train(tiny_data().images)
    terms = method.compute_terms(Batch(x1=x))
    assert torch.isfinite(terms["inter"])


# ------------------------------------------------------------------ common space

B = 4
STUDENT = torch.randn(B, 12, 8, 8)
TEACHERS = [torch.randn(B, 16, 2, 2), torch.randn(B, 24, 4, 4)]


def test_cfl_space_shapes_for_heterogeneous_teachers():
    space = build_common_space("cfl", 12, [16, 24])
    out = space(STUDENT, TEACHERS)
    # L_align compares at the smallest map size (2x2) of the 128-channel extractor output
    assert out.student.shape == (B, 128 * 2 * 2)
    assert [f.shape for f in out.teachers] == [(B, 128 * 2 * 2)] * 2
    # decoders reconstruct each teacher's raw map at its own size and channels
    for t, (dec, f_t) in enumerate(zip(space.decoders, TEACHERS)):
        h = space.extractor(space.adapters[1 + t](f_t))
        assert h.shape[2:] == f_t.shape[2:] and dec(h).shape == f_t.shape
    assert out.rec.ndim == 0 and out.rec > 0
    assert space.adapters[0][0].bias is None and space.adapters[0][0].out_channels == 256


def test_cfl_space_equal_sizes_are_not_pooled():
    space = build_common_space("cfl", 12, [16])
    fs, ft = torch.randn(B, 12, 4, 4), torch.randn(B, 16, 4, 4)
    out = space(fs, [ft])
    h = space.extractor(space.adapters[0](fs))
    torch.testing.assert_close(out.student, h.flatten(1))


def test_mlp_space_shapes_for_heterogeneous_teachers():
    space = build_common_space("mlp", 12, [16, 24], rec_target="adapter")
    out = space(STUDENT, TEACHERS)
    assert out.student.shape == (B, 128)
    assert [f.shape for f in out.teachers] == [(B, 128)] * 2
    assert [tuple(d(f).shape) for d, f in zip(space.decoders, out.teachers)] == [(B, 256)] * 2
    assert out.rec.ndim == 0
    # rec_target raw: decoders reconstruct each teacher's pooled raw map (C_t wide), and
    # L_rec is exactly the summed MSE against it
    raw = build_common_space("mlp", 12, [16, 24], rec_target="raw")
    out = raw(STUDENT, TEACHERS)
    assert [tuple(d(f).shape) for d, f in zip(raw.decoders, out.teachers)] == [(B, 16), (B, 24)]
    want = sum(
        ((d(f) - t.mean(dim=(2, 3))) ** 2).mean()
        for d, f, t in zip(raw.decoders, out.teachers, TEACHERS)
    )
    torch.testing.assert_close(out.rec, want)
    with pytest.raises(ValueError, match="rec_target"):
        build_common_space("mlp", 12, [16], rec_target="pixels")
    # batching the shared MLP over models changes nothing
    alone = raw.mlp(raw.adapters[2](TEACHERS[1]).mean(dim=(2, 3)))
    torch.testing.assert_close(out.teachers[1], alone)


def test_common_space_without_student_or_reconstruction():
    for kind in ("cfl", "mlp"):
        out = build_common_space(kind, 12, [16, 24])(None, TEACHERS, reconstruct=False)
        assert out.student is None and out.rec is None and len(out.teachers) == 2


# ------------------------------------------------------------ the widened contract


class Recorder(Method):
    """A plugin using everything the contract offers beyond views: sample indices (with
    labels, to check they name the right images), epoch, step, the training-set size, two
    parameter groups, ``on_step_end`` and the first stage of the student."""

    uses_labels = True

    def __init__(self, ctx: MethodContext, params) -> None:
        super().__init__(ctx, params)
        self.train_size, self.seen, self.after_step = ctx.train_size, [], []
        self.register_buffer("visits", torch.zeros(ctx.train_size))  # a memory-bank stand-in

    def weights(self) -> dict[str, float]:
        return {"fit": 1.0}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        out, (first,) = self.student.forward_intermediates(batch.x1, [0])
        self.seen.append((batch.index.clone(), batch.y.clone(), batch.epoch, batch.step))
        self.visits[batch.index] += 1
        return {"fit": F.cross_entropy(out.logits, batch.y) + first.square().mean()}

    def param_groups(self, lr: float):
        head = list(self.student.fc.parameters())
        body = list(self.student.backbone.parameters())
        return [{"params": body}, {"params": head, "lr": 2 * lr}]  # the first at the suite's

    def lr_schedule(self, optimizer, total_steps: int):
        self.optimizer, self.total_steps = optimizer, total_steps
        return None  # the suite's schedule

    def on_step_end(self, step: int) -> None:
        self.after_step.append((step, [g["lr"] for g in self.optimizer.param_groups]))


def test_a_plugin_sees_indices_epoch_step_groups_and_stages_through_the_loop():
    n, batch_size, epochs, lr = 10, 4, 2, 1e-3  # 2 steps per epoch, the last 2 images dropped
    data = tiny_data(n)
    data.labels = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])  # tells the images apart
    ctx = make_ctx(train_size=n, epochs=epochs, steps_per_epoch=2)
    method = Recorder(ctx, NoParams())
    lrs = []
    optim = OptimConfig(epochs=epochs, batch_size=batch_size, lr=lr)
    fit(method, data, None, VIEWS, optim, torch.Generator().manual_seed(5),
        FitOptions(torch.device("cpu"), progress=False),
        callbacks=[lambda epoch, record: lrs.append(record["lr"])])  # fmt: skip
    # the data order: one randperm of the generator per epoch, full batches only
    g = torch.Generator().manual_seed(5)
    orders = [torch.randperm(n, generator=g) for _ in range(epochs)]
    expected = [order[i : i + batch_size] for order in orders for i in (0, batch_size)]
    assert [s[0].tolist() for s in method.seen] == [e.tolist() for e in expected]
    for index, y, *_ in method.seen:
        assert torch.equal(y, data.labels[index])  # the indices name the batch's images
    assert [(s[2], s[3]) for s in method.seen] == [(1, 0), (1, 1), (2, 2), (2, 3)]
    assert method.visits.sum() == 4 * batch_size and method.visits.max() <= epochs
    # on_step_end after every step, after the schedule: cosine over 4 steps, per group
    assert method.total_steps == 4
    assert [s for s, _ in method.after_step] == [0, 1, 2, 3]
    for step, group_lrs in method.after_step:
        cosine = (1 + math.cos(math.pi * (step + 1) / 4)) / 2
        assert group_lrs == pytest.approx([lr * cosine, 2 * lr * cosine], abs=1e-12)
    assert lrs == pytest.approx([lr / 2, 0.0], abs=1e-12)  # the first group's, per epoch


def test_param_groups_must_cover_every_trainable_parameter_once():
    class Partial(Recorder):
        def param_groups(self, lr):
            return [{"params": list(self.student.fc.parameters())}]

    method = Partial(make_ctx(train_size=8), NoParams())
    with pytest.raises(ValueError, match="every trainable parameter exactly once"):
        make_training(method, OptimConfig(), 10, SpeedPlan())


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18"])
def test_forward_intermediates_is_forward_bit_for_bit(arch):
    torch.manual_seed(0)
    params = {"width": 4} if arch == "small_cnn" else {"small_input": True}
    model = build_model(arch, num_classes=3, in_channels=1, image_size=PX, **params).eval()
    x = torch.randn(2, 1, PX, PX)
    with torch.no_grad():
        want = model(x)
        out, stages = model.forward_intermediates(x)
        _, picked = model.forward_intermediates(x, [-1, 0])
    assert all(torch.equal(a, b) for a, b in zip(out, want))
    expected = (4, 8, 16) if arch == "small_cnn" else (64, 128, 256, 512)
    assert model.stage_channels == expected
    assert tuple(s.shape[1] for s in stages) == expected
    assert torch.equal(stages[-1], want.fmap)
    assert torch.equal(picked[0], stages[-1]) and torch.equal(picked[1], stages[0])
    with pytest.raises(IndexError, match="stage 9"):
        model.forward_intermediates(x, [9])


def test_hint_kd_loss_is_the_explicit_fitnets_hint_plus_kd():
    teachers = make_teachers()
    method = build("hint_kd", teachers, T=2.0, lambda_hint=0.5)  # stage -2: the middle one
    assert method.weights() == {"hint": 0.5, "std": 1.0}
    x = VIEWS.test(tiny_data().images)
    terms = method.compute_terms(Batch(x1=x))
    with torch.no_grad():  # by hand: the middle stage ends at backbone module 3
        s_map = method.student.backbone[:4](x)  # 6 ch, 4x4
        hints = []
        for t, reg in zip(teachers, method.regressors):
            t_map = t.backbone[:4](x)  # 8 ch 4x4; 12 ch 8x8 (pooled to 4x4)
            r = F.conv2d(s_map, reg.weight, reg.bias)
            if t_map.shape[2] != r.shape[2]:
                t_map = F.avg_pool2d(t_map, 2)
            hints.append(((r - t_map) ** 2).mean())
        p_t = torch.softmax(torch.cat([t(x).logits for t in teachers], 1) / 2, 1)
        log_p_s = torch.log_softmax(method.student(x).logits / 2, 1)
        kd = 4 * (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    assert [r.out_channels for r in method.regressors] == [8, 12]
    torch.testing.assert_close(terms["hint"], (hints[0] + hints[1]) / 2)
    torch.testing.assert_close(terms["std"], kd)
    with pytest.raises(ValueError, match="stage 3: the student has 3 stages"):
        build("hint_kd", teachers, stage=3)


def test_cfl_reference_recipe_groups_at_10x_and_steps_down_every_15_epochs():
    run = {"train_size": 8, "epochs": 30, "steps_per_epoch": 2}
    method = build("cfl", run=run, recipe="reference")
    training = make_training(method, OptimConfig(lr=1e-4, epochs=30), 60, SpeedPlan(), 2)
    backbone, fast = training.opt.param_groups
    body_ids = {id(p) for p in method.student.backbone.parameters()}
    assert {id(p) for p in backbone["params"]} == body_ids
    fast_ids = {*map(id, method.student.fc.parameters()), *map(id, method.common.parameters())}
    assert {id(p) for p in fast["params"]} == fast_ids
    assert (backbone["lr"], fast["lr"]) == pytest.approx((1e-4, 1e-3))
    lrs = []
    for _ in range(31):  # step 30 is the first of epoch 16
        training.opt.step()
        training.sched.step()
        lrs.append([g["lr"] for g in training.opt.param_groups])
    assert lrs[28] == pytest.approx([1e-4, 1e-3])  # after step 29, the last of epoch 15
    assert lrs[29] == pytest.approx([1e-5, 1e-4])  # StepLR's boundary: 15 epochs of 2 steps
    # the harness recipe: the suite's single group and cosine
    harness = make_training(build("cfl", run=run), OptimConfig(lr=1e-4), 60, SpeedPlan(), 2)
    assert len(harness.opt.param_groups) == 1
    assert isinstance(harness.sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_training(build("cfl", recipe="reference"), OptimConfig(), 60, SpeedPlan())


def test_a_real_run_gives_the_method_its_run_length(tmp_path):
    """The runner fills the context's train_size / epochs / steps_per_epoch: CFL's reference
    recipe needs steps_per_epoch for its StepLR, and keeps the lr flat within the first 15
    epochs where the suite's cosine would end the epoch at 0."""
    suite = tiny_suite(methods=[{"name": "cfl", "params": {"recipe": "reference"}}])
    suite["datasets"][0]["tasks"] = [[0, 1], [2, 3]]  # 4 of the 10 digits: a quick run
    suite["teachers"]["optim"]["epochs"] = suite["optim"]["epochs"] = 1
    (run,) = expand(validate_suite(suite, "t"))
    rec = execute(run, ExecOptions(tmp_path, "cpu", progress=False))
    assert rec.finished, rec.error
    assert rec.history[0]["lr"] == pytest.approx(suite["optim"]["lr"])


# ------------------------------------------------------------ what the base does for plugins


class Minimal(Method):
    """Only ``term_weights`` and ``loss_terms``: the base gives student, predict and embed."""

    term_weights = {"fit": 1.0, "boom": 0.0}

    def loss_terms(self, batch: Batch):
        def boom():
            raise AssertionError("a term at weight 0 was computed")

        return {"fit": lambda: self.student(batch.x1).logits.square().mean(), "boom": boom}


def test_a_plugin_with_only_loss_terms_gets_a_student_predict_and_embed():
    torch.manual_seed(0)
    want = make_ctx().build_student()
    torch.manual_seed(0)
    method = Minimal(make_ctx(), NoParams())
    assert isinstance(method.student, torch.nn.Module)
    assert [n for n, _ in method.named_parameters()] == [
        f"student.{n}" for n, _ in want.named_parameters()
    ]
    assert all(torch.equal(a, b) for a, b in zip(method.parameters(), want.parameters()))
    x = VIEWS.test(tiny_data().images)
    method.eval()
    with torch.no_grad():
        assert torch.equal(method.predict(x), want.eval()(x).logits)
        assert torch.equal(method.embed(x), want(x).feat)
    assert method.active_weights == {"fit": 1.0}
    terms = method.compute_terms(Batch(x1=x))  # "boom" (weight 0) is never called
    assert list(terms) == ["fit"]
    result = fit(method, tiny_data(), None, VIEWS, OptimConfig(epochs=1, batch_size=8),
                 torch.Generator().manual_seed(0), FitOptions(progress=False))  # fmt: skip
    assert {k for k in result.history[0] if k.startswith("loss/")} == {"loss/fit"}


def test_methods_without_a_student_build_none():
    for name in ("teacher", "ensemble"):
        method = build(name)
        assert not method.builds_student and not hasattr(method, "student")
        assert list(method.parameters()) == [] and method.embed(torch.zeros(2, 1, PX, PX)) is None

    class NoStudent(Minimal):
        builds_student = False

    with pytest.raises(NotImplementedError, match="no student"):
        NoStudent(make_ctx(), NoParams()).predict(torch.zeros(2, 1, PX, PX))


def test_a_tensor_for_a_weight_0_term_or_an_unknown_term_is_an_error():
    class Eager(Minimal):
        def loss_terms(self, batch):
            return {"fit": self.student(batch.x1).logits.mean(), "boom": torch.zeros(())}

    class Unknown(Minimal):
        def loss_terms(self, batch):
            return {"fit": torch.zeros(()), "typo": torch.zeros(())}

    x = VIEWS.test(tiny_data().images)
    with pytest.raises(ValueError, match="'boom' has weight 0 but was computed"):
        Eager(make_ctx(), NoParams()).compute_terms(Batch(x1=x))
    with pytest.raises(ValueError, match="'typo' has no weight"):
        Unknown(make_ctx(), NoParams()).compute_terms(Batch(x1=x))


@pytest.mark.parametrize(
    ("name", "params", "off"),
    [
        ("cka", {"lambda_inter": 0, "lambda_rec": 10}, "inter_contrast"),
        ("cka", {"lambda_intra": 0}, "intra_contrast"),
        ("cka", {"lambda_std": 0}, "soft_target_kl"),
        ("cfl", {"lambda_std": 0}, "soft_target_kl"),
        ("hint_kd", {"lambda_std": 0}, "soft_target_kl"),
        ("hint_kd", {"lambda_hint": 0}, "hint_loss"),
    ],
)
def test_a_term_at_weight_0_is_never_computed(name, params, off, monkeypatch):
    import methods.amalgamation
    import methods.common_space
    import methods.hint_kd

    def never(*args, **kwargs):
        raise AssertionError(f"{off} called for a term at weight 0")

    for module in (methods.amalgamation, methods.common_space, methods.hint_kd):
        if hasattr(module, off):
            monkeypatch.setattr(module, off, never)
    method = build(name, **params)
    x = VIEWS.train(tiny_data().images)
    terms = method.compute_terms(Batch(x1=x, x2=x.flip(3) if method.needs_second_view else None))
    assert set(terms) == nonzero(method) and terms


def test_loss_options_are_keyword_only():
    from methods.common_space import common_space_terms
    from methods.losses import inter_contrast, intra_contrast, mmd2, soft_target_kl, transport_map

    z = torch.randn(4, 3)
    with pytest.raises(TypeError):
        inter_contrast(z, [z], "cosine", 0.5)
    with pytest.raises(TypeError):
        transport_map(z, "cosine")
    with pytest.raises(TypeError):
        intra_contrast(z, z, 0.4)
    with pytest.raises(TypeError):
        mmd2(z, z, [1.0])
    with pytest.raises(TypeError):
        soft_target_kl(z, [z], 2.0)
    space = build_common_space("mlp", 12, [16])
    with pytest.raises(TypeError):
        common_space_terms(space, None, [], True, False, None, False, "sum")
    with pytest.raises(TypeError):
        build_common_space("mlp", 12, [16], "raw")
    # spelled out, the same options work
    assert torch.isfinite(inter_contrast(z, [z], distance="cosine", tau=0.5))


def test_the_teacher_row_owns_its_fan_out():
    """``teacher`` without ``index`` is one row per teacher task (asked of the method, not
    special-cased by the planner); with an index, that teacher alone."""
    cls = METHODS.get("teacher")
    asked = []

    def n_tasks():
        asked.append(1)
        return 3

    assert cls.rows({"index": None}, "Teacher", n_tasks) == [
        ({"index": 0}, "Teacher 1"), ({"index": 1}, "Teacher 2"), ({"index": 2}, "Teacher 3")
    ]  # fmt: skip
    assert cls.rows({"index": 1}, "T2 alone", n_tasks) == [({"index": 1}, "T2 alone")]
    assert len(asked) == 1  # the task count is only asked by a fan-out
    assert METHODS.get("vanilla_kd").rows({"T": 4.0}, "KD", n_tasks) == [({"T": 4.0}, "KD")]
    with pytest.raises(ValueError, match="index is unset"):
        build("teacher", make_teachers()).predict(VIEWS.test(tiny_data().images))
