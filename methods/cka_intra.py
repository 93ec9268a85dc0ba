"""CKA-Intra (Table 2 row): ``L_intra + 10 L_align + L_std`` (+ ``10 L_rec``) -- Eq. 12
with ``l_inter = 0``; margin-based intra-model contrast (Eq. 3) on the ``mlp`` common space.
"""

from __future__ import annotations

from bench.core.method import register
from methods.amalgamation import Amalgamation, params_without


@register("cka_intra")
class CKAIntra(Amalgamation):
    display = "CKA-Intra"
    Params = params_without("CKAIntraParams", "inter")
