"""Suite YAML -> validated :class:`SuiteConfig` (pydantic), with dotted ``--set`` overrides.

Every section forbids unknown keys; every error becomes one :class:`ConfigError` line that
names the file and the dotted key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.core.errors import ConfigError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Choice = str | bool | int | float | None
Fraction = Annotated[float, Field(ge=0, lt=1)]


def safe_name(value: str) -> str:
    """A name that becomes one path component under the results directory: no path
    separators, no ``.``/``..``, no control characters (``../../x`` never escapes)."""
    if (
        not value
        or value in (".", "..")
        or any(c in value for c in "/\\")
        or any(ord(c) < 32 for c in value)
        or len(value) > 200
    ):
        raise ValueError(
            "not a safe name for a folder under the results directory "
            "(no '/', '\\', '..', control characters; at most 200 characters)"
        )
    return value


SafeName = Annotated[str, AfterValidator(safe_name)]


def check_gpus_per_run(value: float) -> float:
    """GPUs per run under Ray, ``0 < g <= 1`` (0.5 packs two runs per GPU): the one check
    of the suite's ``gpus_per_run``, ``--gpus-per-run`` and the Ray launcher's slots."""
    if not 0 < value <= 1:
        raise ValueError(f"must be in (0, 1], got {value}")
    return value


GpusPerRun = Annotated[float, AfterValidator(check_gpus_per_run)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(Strict):
    """Overrides of a dataset's default view recipe (``bench.data.datasets.AugmentDefaults``)."""

    image_size: PositiveInt | None = None
    crop_scale: tuple[float, float] | None = None
    flip: Annotated[float, Field(ge=0, le=1)] | None = None
    jitter: Annotated[float, Field(ge=0)] | None = None
    blur: Annotated[float, Field(ge=0, le=1)] | None = None
    blur_sigma: tuple[float, float] | None = None


class ModelConfig(Strict):
    arch: str
    pretrained: str | None = None  # local checkpoint path only; never downloaded
    params: dict[str, Any] = {}


class OptimConfig(Strict):
    """Optimisation recipe (docs/methods.md "Total": Adam, lr 5e-4, cosine, wd 5e-4, batch 64)."""

    epochs: PositiveInt = 100
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 5e-4
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    schedule: Literal["cosine", "constant"] = "cosine"


class TeacherConfig(Strict):
    """How teachers are trained (with labels, on their own classes). ``arch`` is one name
    for all teachers or one per task (heterogeneous teachers)."""

    arch: str | list[str]
    pretrained: str | list[str | None] | None = None
    # one mapping for every teacher, or one per task (e.g. two widths of one architecture)
    params: dict[str, Any] | list[dict[str, Any]] = {}
    optim: OptimConfig = OptimConfig(epochs=30, lr=1e-3)
    seed: int = 0

    def per_task(self, n: int) -> list[tuple[str, dict[str, Any], str | None]]:
        """``(arch, params, pretrained)`` of each of ``n`` teachers; a list of the wrong
        length is a :class:`ConfigError` naming its key."""
        out = []
        for name, value in (("arch", self.arch), ("params", self.params),
                            ("pretrained", self.pretrained)):  # fmt: skip
            if isinstance(value, list) and len(value) != n:
                raise ConfigError(f"teachers.{name}: {len(value)} entries for {n} tasks")
            out.append(value if isinstance(value, list) else [value] * n)
        return list(zip(*out))

    def archs_and_params(self) -> list[tuple[str, dict[str, Any]]]:
        """Every distinct ``(arch, params)`` the teachers use, without knowing the tasks."""
        archs = self.arch if isinstance(self.arch, list) else [self.arch]
        params = self.params if isinstance(self.params, list) else [self.params]
        n = max(len(archs), len(params))
        archs = archs * n if len(archs) == 1 else archs
        params = params * n if len(params) == 1 else params
        if len(archs) != len(params):
            raise ConfigError(f"teachers: {len(archs)} architectures but {len(params)} params")
        return list(zip(archs, params))


class DatasetConfig(Strict):
    """One column of a table: a dataset and how its classes split into teacher tasks."""

    name: str
    id: SafeName | None = None  # column label; default: name
    root: str | None = None
    params: dict[str, Any] = {}
    # "halves" | "natural" (the loader's own groups, e.g. one per merged dataset)
    # | explicit class lists (indices or class names), one per teacher
    tasks: Literal["halves", "natural"] | list[list[int | str]] = "halves"
    val_fraction: Fraction = 0.1
    split_seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    # This column's teachers, instead of the suite's ``teachers:`` (e.g. heterogeneous
    # architectures in one column of a table); enters the run keys as the suite's does.
    teachers: TeacherConfig | None = None
    # Name of a suite-level ``pretrain:`` stage whose backbone initialises this column's
    # teachers and students; ``none`` / omitted: from scratch. Not part of the dataset's
    # identity (the stage's own spec enters the run and teacher keys instead).
    pretrain: str | None = None

    @field_validator("pretrain", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value

    @property
    def column(self) -> str:
        return self.id or self.name


def teachers_of(suite: SuiteConfig, ds: DatasetConfig) -> TeacherConfig:
    """The teachers of one column: its own ``teachers:`` or the suite's."""
    return ds.teachers or suite.teachers


class ParamSpace(Strict):
    """One searched param: ``{low, high[, log][, step]}`` (``type: int`` for integers)
    or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    type: Literal["float", "int"] = "float"
    choices: list[Choice] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpace:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int":
            for v in (self.low, self.high, self.step):
                if v is not None and v != int(v):
                    raise ValueError(f"type int: {v:g} is not an integer")
        return self

    def extremes(self) -> list[Any]:
        """The values the space can reach at its ends (every choice for categoricals)."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


class PrunerConfig(Strict):
    """Pruning on per-epoch validation accuracy (step = epoch, seeds run one after the
    other). ``median``: MedianPruner; ``percentile``: PercentilePruner (prunes below the
    given percentile of the other trials at the same epoch: gentler for noisy, small
    validation splits); ``hyperband``: HyperbandPruner; ``none``."""

    type: Literal["median", "percentile", "hyperband", "none"] = "median"
    n_startup_trials: NonNegInt = 5  # median/percentile: completed trials before pruning
    n_warmup_steps: NonNegInt = 1  # median/percentile: epochs before a trial can be pruned
    percentile: Annotated[float, Field(gt=0, lt=100)] = 25.0  # percentile
    reduction_factor: Annotated[int, Field(ge=2)] = 3  # hyperband


class MethodConfig(Strict):
    """A row (or, with ``grid``, a family of rows) of the table."""

    name: str
    label: str | None = None
    params: dict[str, Any] = {}
    # A tuning result (``results/tune/<study>/best.yaml``): its ``params`` are this entry's
    # params; keys set in ``params`` (or ``grid``) here override the loaded ones.
    params_from: str | None = None
    # Cartesian grid: method params by name, or "student.arch" / "optim.lr" style keys.
    grid: dict[str, list[Any]] = {}
    student: ModelConfig | None = None
    optim: OptimConfig | None = None
    # Equal-budget tuning (bench.experiment.protocol): this row's own params (and ``optim.*`` recipe
    # keys) searched on the validation split under the suite's ``protocol:`` budget; the
    # row then trains the best point over the suite's seeds.
    search: dict[str, ParamSpace] = {}
    # Dose-response: one loss weight (``lambda_<term>``) and its values, a row per value.
    sweep: dict[str, Annotated[list[float], Field(min_length=1)]] = {}

    @field_validator("sweep")
    @classmethod
    def _one_weight(cls, sweep: dict[str, list[float]]) -> dict[str, list[float]]:
        if len(sweep) > 1:
            raise ValueError(
                f"names {len(sweep)} weights ({', '.join(sweep)}); sweep one per entry"
            )
        return sweep

    @model_validator(mode="after")
    def _one_kind_of_rows(self) -> MethodConfig:
        kinds = [k for k in ("grid", "search", "sweep") if getattr(self, k)]
        if len(kinds) > 1:
            raise ValueError(f"{' and '.join(kinds)} in one entry; give each its own entry")
        return self

    @field_validator("grid")
    @classmethod
    def _grid_lists_not_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
        return grid


def _on_off(value: Any) -> Any:
    """YAML 1.1 reads bare ``on`` / ``off`` as booleans: take them back as words."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]


class PretrainDataConfig(Strict):
    """The source dataset of a pretrain stage: a dataset entry with the classes to use."""

    name: str
    root: str | None = None
    params: dict[str, Any] = {}
    classes: Literal["all"] | Annotated[list[int | str], Field(min_length=2)] = "all"
    val_fraction: Fraction = 0.1
    split_seed: int = 0
    augment: AugmentConfig = AugmentConfig()


class PretrainConfig(Strict):
    """A backbone trained supervised on a source dataset (``bench.engine.pretrain``), cached by
    content key; a dataset entry's ``pretrain: <name>`` initialises its models from it."""

    dataset: PretrainDataConfig
    arch: str
    params: dict[str, Any] = {}
    optim: OptimConfig = OptimConfig(epochs=30, lr=1e-3)
    seed: int = 0


class SpeedConfig(Strict):
    """GPU speed switches (``bench.engine.speed``); ``auto`` = on when the device is CUDA, off on
    the CPU. Suite level, not in RunSpec: they never change a run key."""

    amp: Annotated[Literal["auto", "bf16", "fp16", "off"], BeforeValidator(_on_off)] = "auto"
    channels_last: Switch = "auto"
    compile: bool = False
    cudnn_benchmark: Switch = "auto"
    pin_memory: Switch = "auto"
    persistent_workers: Switch = "auto"


class ProtocolConfig(Strict):
    """One tuning budget for every searched row of a suite (``bench.experiment.protocol``): each row
    x column gets its own Optuna study of ``trials`` finished trials on the validation
    split, never more; a row cannot carry a budget of its own."""

    trials: PositiveInt
    epochs: PositiveInt | None = None  # per trial; default: the row's own epochs
    seeds: list[int] = Field(default=[0], min_length=1)  # objective: mean over these
    objective: Literal["last", "best"] = "last"  # val accuracy of the last or best epoch
    sampler_seed: int = 0
    n_startup_trials: NonNegInt = 4  # random trials before TPE models the space
    pruner: PrunerConfig = PrunerConfig()
    # trial 0 of every study is the row's own params (the published defaults) when they
    # lie in the space, so a tuned row is never worse on val than its untuned reading
    enqueue_defaults: bool = True


class SuiteConfig(Strict):
    name: SafeName
    description: str = ""
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    datasets: list[DatasetConfig] = Field(min_length=1)
    pretrain: dict[str, PretrainConfig] = {}  # named stages, chosen per dataset entry
    teachers: TeacherConfig
    student: ModelConfig
    optim: OptimConfig = OptimConfig()
    methods: list[MethodConfig] = Field(min_length=1)
    num_workers: Annotated[int, Field(ge=0)] = 0
    # Save each student's training state every N epochs (0: off) so a killed run restarts
    # from its last saved epoch; suite level, not in RunSpec: it never changes a run key.
    checkpoint_every: Annotated[int, Field(ge=0)] = 0
    speed: SpeedConfig = SpeedConfig()
    # --launcher ray: GPUs per run (0.5 packs two runs per GPU); suite level, not in RunSpec.
    gpus_per_run: GpusPerRun = 1.0
    # torch threads per run, under every launcher (bench.engine.runtime.resolve_threads; --threads
    # wins). None: this process's threads, shared among the runs that go at once.
    # Suite level, not in RunSpec: never changes a run key (env.threads records it).
    threads: Annotated[int, Field(ge=1)] | None = None
    # Test accuracy after every epoch (history ``curve_test_acc``) for ``bench table
    # --select best-test``; it feeds no decision, ever. Suite level: never changes a run key.
    record_test_curve: bool = False
    # Equal-budget tuning of the rows with ``search:`` (both or neither).
    protocol: ProtocolConfig | None = None
    # The row every other row is compared with (paired effects, power, dose plots).
    reference: str = "Vanilla KD"

    @model_validator(mode="after")
    def _search_needs_protocol(self) -> SuiteConfig:
        searched = [i for i, m in enumerate(self.methods) if m.search]
        if searched and self.protocol is None:
            raise ValueError(
                f"methods.{searched[0]}.search needs a suite-level protocol: section "
                "(the tuning budget every searched row shares)"
            )
        if self.protocol is not None and not searched:
            raise ValueError("protocol: no method entry has search:; add one or remove protocol")
        return self


# ---------------------------------------------------------------------------- loading


MAX_YAML_BYTES = 4 * 1024 * 1024  # a suite or tune file is a few KB; refuse before parsing
MAX_YAML_NODES = 100_000  # after expanding aliases (an alias bomb expands to billions)
MAX_YAML_DEPTH = 64


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; one-line errors name the file.

    Refused before or while parsing: a file over ``MAX_YAML_BYTES``, an empty one, binary
    or non-UTF-8 bytes, nesting deeper than ``MAX_YAML_DEPTH``, and more than
    ``MAX_YAML_NODES`` nodes once aliases are expanded (a "billion laughs" file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(
            f"{path}: {size / 2**20:.1f} MiB, over the {MAX_YAML_BYTES // 2**20} MiB limit "
            "for a YAML config file"
        )
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise ConfigError(f"{path}: binary file (NUL bytes), not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip() or all(
        ln.lstrip().startswith("#") or not ln.strip() for ln in text.splitlines()
    ):
        raise ConfigError(f"{path}: empty file; expected a YAML mapping")
    data = load_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_yaml_text(text: str, source: str) -> Any:
    """``yaml.safe_load`` of one document, with the size and depth limits of
    :func:`read_yaml` checked on the composed node graph before objects are built."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node_graph(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{source}:{where} invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply (limit {MAX_YAML_DEPTH})") from None
    finally:
        loader.dispose()


def _check_node_graph(root: yaml.Node, source: str) -> None:
    """Depth and alias-expanded node count of a composed YAML graph (iterative, memoised)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    busy: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            busy.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_YAML_DEPTH:
                raise ConfigError(f"{source}: YAML nested too deeply (limit {MAX_YAML_DEPTH})")
            if size[key] > MAX_YAML_NODES:
                raise ConfigError(
                    f"{source}: YAML expands to over {MAX_YAML_NODES} nodes (aliases of "
                    "aliases?); refusing it"
                )
            continue
        if key in size:
            continue
        if key in busy:
            raise ConfigError(f"{source}: YAML alias refers to itself (a recursive structure)")
        busy.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)
        if len(busy) > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: YAML nested too deeply (limit {MAX_YAML_DEPTH})")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as YAML) in place; list items by index."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from None
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        node = _child(node, part, key, create=True)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping or list")


def _index(node: list, part: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, key: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: parent is not a mapping or list")
    if node.get(part) is None and create:
        node[part] = {}
    return node[part]


def format_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    """First pydantic error as ``source: prefix.dotted.key: message`` (+ how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]]) or "(top level)"
    value = first.get("input")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif not isinstance(value, dict | list) and value is not None:
        msg = f"{msg} (got {value!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: " * bool(source) + f"{loc}: {msg}{more}"


def validate_suite(data: dict[str, Any], source: str) -> SuiteConfig:
    try:
        return SuiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_suite(path: str | Path, overrides: list[str] | None = None) -> SuiteConfig:
    """Load, override and validate a suite file; names are checked by :mod:`bench.experiment.plan`."""
    path = Path(path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data = copy.deepcopy(data)
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate_suite(data, str(path))
