"""CFL (Luo et al., IJCAI 2019) as a row of the CKA paper's tables (methods.md method table):

    L = L_std + 10 L_align + 10 L_rec        (Eq. 11, Eq. 7-10 on the ``cfl`` block, CFL's MSE)

i.e. the CFL reference's ``soft CE + 10 * (MMD + beta * MSE)`` with ``beta = 1``, on its
``CFL_ConvBlock`` common space (:class:`methods.common_space.CFLSpace`).
"""

from __future__ import annotations

from typing import Literal

from bench.method import register
from methods.amalgamation import Amalgamation, AmalgamationParams, Weight
from methods.readings import READINGS


class CFLParams(AmalgamationParams):
    reading: Literal[READINGS] = "cfl-reference"  # summed kernels, as the reference code
    lambda_intra: Weight = 0.0
    lambda_inter: Weight = 0.0
    common_space: Literal["cfl", "mlp"] = "cfl"


@register("cfl")
class CFL(Amalgamation):
    display = "CFL"
    Params = CFLParams
