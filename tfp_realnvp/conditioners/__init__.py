"""Conditioners: the networks that map a coupling's unchanged part to its shift and log-scale."""

from tfp_realnvp.conditioners.mlp import MLPConditioner

__all__ = [
    "MLPConditioner",
]
