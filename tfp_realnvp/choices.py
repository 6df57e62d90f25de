"""The names of the library's built-in choices, in one place and importable without TensorFlow.

The modules that implement each choice import their tuple from here (`bounds.py` the bounds,
`flows/real_nvp.py` the permutations, `flows/registry.py` the built-in flows, `data.py` the
datasets), and so does the command line, which builds its `--help` and checks its arguments
before it imports TensorFlow.
"""

from __future__ import annotations

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_FLOWS",
    "LOG_SCALE_BOUNDS",
    "MIXINGS",
    "PERMUTATIONS",
    "TRANSFORMS",
]

LOG_SCALE_BOUNDS: tuple[str, ...] = ("tanh", "sigmoid", "unbounded")
"""How an affine coupling bounds its log-scale; see `tfp_realnvp.bounds`."""

PERMUTATIONS: tuple[str, ...] = ("reverse", "random", "lu")
"""What `real_nvp` places between couplings: fixed permutations (`permutation_indices`) or a
learned LU-decomposed linear map (`"lu"`, `bijectors.mixing.LUMixing`)."""

TRANSFORMS: tuple[str, ...] = ("affine", "spline")
"""The elementwise map of a coupling: `AffineCoupling` (Real NVP's) or `SplineCoupling` (Neural
Spline Flows' rational-quadratic spline)."""

MIXINGS: tuple[str, ...] = ("none", "1x1")
"""What `real_nvp_multiscale` places before each coupling: nothing, or Glow's learned 1x1
convolution (`bijectors.mixing.LUMixing` over the channels)."""

BUILTIN_FLOWS: tuple[str, ...] = ("real_nvp", "real_nvp_multiscale")
"""The flow builders registered by the package itself; `register_flow` adds a user's."""

BUILTIN_DATASETS: tuple[str, ...] = ("two_moons", "checkerboard", "eight_gaussians", "pinwheel", "digits")
"""The datasets `load_dataset` knows by name; `csv:PATH` and `npy:PATH` load a user's."""
