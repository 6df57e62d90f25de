"""Flows: builders that return standard TFP objects, registered by name (see `registry`)."""

from tfp_realnvp.flows.real_nvp import PERMUTATIONS, coupling_layers, permutation_indices, real_nvp
from tfp_realnvp.flows.registry import FlowBuilder, flow_builder, register_flow, registered_flows

__all__ = [
    "PERMUTATIONS",
    "FlowBuilder",
    "coupling_layers",
    "flow_builder",
    "permutation_indices",
    "real_nvp",
    "register_flow",
    "registered_flows",
]
