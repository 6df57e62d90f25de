"""Bijectors: the coupling plumbing with its affine and spline maps, learned LU mixing, the image
pieces (squeeze, factoring out, batch and activation normalization), and the preprocessing that
maps data to the flow's space."""

from tfp_realnvp.bijectors.act_norm import ActNorm
from tfp_realnvp.bijectors.affine_coupling import AffineCoupling
from tfp_realnvp.bijectors.batch_normalization import BatchNormalization
from tfp_realnvp.bijectors.coupling import Coupling
from tfp_realnvp.bijectors.factor_out import FactorOut
from tfp_realnvp.bijectors.mixing import LUMixing
from tfp_realnvp.bijectors.preprocessing import Preprocessing
from tfp_realnvp.bijectors.spline_coupling import SplineCoupling
from tfp_realnvp.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "BatchNormalization",
    "Coupling",
    "FactorOut",
    "LUMixing",
    "Preprocessing",
    "SplineCoupling",
    "Squeeze",
]
