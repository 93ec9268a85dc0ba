"""CKA (Table 2 row), the full Eq. 12: ``L_intra + L_inter + 10 L_align + L_std``
(+ ``10 L_rec``) on the ``mlp`` common space. Ablations (Table 3) set single ``lambda_*``
to 0 or swap ``distance`` of ``L_inter`` among euclidean / cosine / mmd.
"""

from __future__ import annotations

from bench.core.method import register
from methods.amalgamation import Amalgamation, AmalgamationParams


@register("cka")
class CKA(Amalgamation):
    display = "CKA"
    Params = AmalgamationParams
