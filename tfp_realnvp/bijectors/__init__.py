"""Bijectors: the affine coupling of Real NVP and the preprocessing that maps data to the flow's space."""

from tfp_realnvp.bijectors.affine_coupling import AffineCoupling
from tfp_realnvp.bijectors.preprocessing import Preprocessing

__all__ = [
    "AffineCoupling",
    "Preprocessing",
]
