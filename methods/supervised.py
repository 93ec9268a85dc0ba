"""Supervised cross-entropy on the true labels of the images it is given.

As a suite row (``supervised``): the student over the union labels, the only student row
that sees labels (an upper reference, not an amalgamation method). The loss is the
engine's own supervised trainer (:class:`bench.engine.supervised.CrossEntropy`), the one
that trains teachers and pretrain stages.
"""

from __future__ import annotations

from bench.core.method import register
from bench.engine.supervised import CrossEntropy


@register("supervised")
class Supervised(CrossEntropy):
    display = "Supervised"
