"""The official distributions' counts in one place, and how a root compares to them.

Used by ``bench data check`` and the pre-run checks (:mod:`bench.experiment.preflight`), which warn
when a root holds a subset or something else. Counts are of the official split lists
(the train split being the one each loader trains on by default)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Official:
    """One official distribution: classes, train and test images."""

    title: str
    classes: int
    train: int
    test: int
    train_name: str = "train"  # what the release calls the training split

    def counts(self) -> tuple[int, int, int]:
        return self.classes, self.train, self.test


OFFICIAL: dict[str, Official] = {
    "cub200": Official("CUB-200-2011", 200, 5_994, 5_794),
    "stanford_dogs": Official("Stanford Dogs", 120, 12_000, 8_580),
    "stanford_cars": Official("Stanford Cars", 196, 8_144, 8_041),
    "fgvc_aircraft": Official("FGVC-Aircraft 2013b (variants)", 100, 6_667, 3_333, "trainval"),
    "cifar10": Official("CIFAR-10", 10, 50_000, 10_000),
    "mnist": Official("MNIST", 10, 60_000, 10_000),
}
# FGVC-Aircraft's other annotation levels and its train split without val
AIRCRAFT_CLASSES = {"variant": 100, "family": 70, "manufacturer": 30}
AIRCRAFT_TRAIN = {"trainval": 6_667, "train": 3_334}


def official(name: str, **params) -> Official | None:
    """The official counts of ``name`` as loaded with ``params`` (None: no manifest)."""
    base = OFFICIAL.get(name)
    if base is None or name != "fgvc_aircraft":
        return base
    level = params.get("annotation_level", "variant")
    split = params.get("train_split", "trainval")
    if level not in AIRCRAFT_CLASSES or split not in AIRCRAFT_TRAIN:
        return base
    return Official(
        f"FGVC-Aircraft 2013b ({level} level)",
        AIRCRAFT_CLASSES[level],
        AIRCRAFT_TRAIN[split],
        base.test,
        split,
    )


def compare(found: tuple[int, int, int], want: Official) -> tuple[str, str]:
    """``(verdict, details)``: verdict ``complete``, ``subset`` (nothing above the official
    counts, something below) or ``differs``; details names each count that is off."""
    names = ("classes", f"{want.train_name} images", "test images")
    pairs = list(zip(names, found, want.counts()))
    if all(f == w for _, f, w in pairs):
        return "complete", ""
    if all(f <= w for _, f, w in pairs):
        return "subset", ", ".join(f"{f:,} of {w:,} {n}" for n, f, w in pairs if f != w)
    return "differs", ", ".join(f"{f:,} {n} (official {w:,})" for n, f, w in pairs if f != w)


def sentence(found: tuple[int, int, int], want: Official) -> str:
    """The plain verdict ``bench data check`` prints."""
    verdict, details = compare(found, want)
    if verdict == "complete":
        return "official distribution: complete"
    if verdict == "subset":
        return f"a subset: {details}"
    return f"differs from the official distribution: {details}"
