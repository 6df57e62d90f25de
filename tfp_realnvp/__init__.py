"""tfp_realnvp: Real NVP normalizing flows as TensorFlow Probability bijectors and distributions."""

import os as _os

# TensorFlow's C++ INFO/WARNING lines drown the command line's output; users can still set it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfp_realnvp.affine_coupling import AffineCoupling
from tfp_realnvp.bounds import LOG_SCALE_BOUNDS
from tfp_realnvp.bounds import TanhLogScale
from tfp_realnvp.conditioners import MLPConditioner
from tfp_realnvp.export import export_saved_model
from tfp_realnvp.flows import coupling_layers
from tfp_realnvp.flows import keras_layers
from tfp_realnvp.flows import permutation_indices
from tfp_realnvp.flows import real_nvp
from tfp_realnvp.masks import channel_mask
from tfp_realnvp.masks import checkerboard_mask
from tfp_realnvp.model import FlowModel
from tfp_realnvp.preprocessing import Preprocessing

__all__ = [
    "AffineCoupling",
    "FlowModel",
    "LOG_SCALE_BOUNDS",
    "MLPConditioner",
    "Preprocessing",
    "TanhLogScale",
    "channel_mask",
    "checkerboard_mask",
    "coupling_layers",
    "export_saved_model",
    "keras_layers",
    "permutation_indices",
    "real_nvp",
]

__version__ = "0.1.0"
