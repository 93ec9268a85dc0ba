"""CKA-Inter (Table 2 row): ``L_inter + 10 L_align + L_std`` (+ ``10 L_rec``) -- Eq. 12
with ``l_intra = 0``; distance-based inter-model contrast (Eq. 5-6) on the ``mlp`` common
space. One view per image (no ``x2``).
"""

from __future__ import annotations

from bench.core.method import register
from methods.amalgamation import Amalgamation, params_without


@register("cka_inter")
class CKAInter(Amalgamation):
    display = "CKA-Inter"
    Params = params_without("CKAInterParams", "intra")
