"""Conditioners: the networks that map a coupling's unchanged part to its shift and log-scale."""

from tfp_realnvp.conditioners.mlp import MLPConditioner
from tfp_realnvp.conditioners.resnet import ResNetConditioner

__all__ = [
    "MLPConditioner",
    "ResNetConditioner",
]
