"""Flows: builders that return standard TFP objects, registered by name (see `registry`)."""

from tfp_realnvp.flows.multiscale import FLOW_NORMALIZATIONS, real_nvp_multiscale
from tfp_realnvp.flows.real_nvp import PERMUTATIONS, coupling_layers, permutation_indices, real_nvp
from tfp_realnvp.flows.registry import FlowBuilder, flow_builder, register_flow, registered_flows

__all__ = [
    "FLOW_NORMALIZATIONS",
    "PERMUTATIONS",
    "FlowBuilder",
    "coupling_layers",
    "flow_builder",
    "permutation_indices",
    "real_nvp",
    "real_nvp_multiscale",
    "register_flow",
    "registered_flows",
]
