"""The names of the library's built-in choices, in one place and importable without TensorFlow.

The modules that implement each choice import their tuple from here (`bounds.py` the bounds,
`flows/real_nvp.py` the permutations, `flows/registry.py` the built-in flows, `data.py` the
datasets), and so does the command line, which builds its `--help` and checks its arguments
before it imports TensorFlow.
"""

from __future__ import annotations

import difflib

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_FLOWS",
    "DISTRIBUTIONS",
    "FILE_KINDS",
    "LOG_SCALE_BOUNDS",
    "MIXINGS",
    "PERMUTATIONS",
    "TRANSFORMS",
    "unknown_dataset",
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

DISTRIBUTIONS: tuple[str, ...] = ("none", "mirrored", "multi_worker")
"""How `fit_flow` spreads training: one device, MirroredStrategy, MultiWorkerMirroredStrategy
(`tfp_realnvp.distribution`)."""

BUILTIN_DATASETS: tuple[str, ...] = ("two_moons", "checkerboard", "eight_gaussians", "pinwheel", "digits")
"""The datasets `load_dataset` knows by name; `csv:PATH`, `npy:PATH` and `tfrecord:PATH` load a user's."""

FILE_KINDS: tuple[str, ...] = ("csv", "npy", "tfrecord")
"""The formats of a user's data, `KIND:PATH` with PATH a file or a glob of shards (`tfp_realnvp.data`)."""


def unknown_dataset(spec: str) -> str | None:
    """What is wrong with the dataset name `spec`, or `None` if it names one.

    A name from `BUILTIN_DATASETS` or `'csv:...'` / `'npy:...'` (whether the file exists is the
    loader's business) is a dataset. Otherwise the message lists the names and suggests the
    closest: `'csv:moons.csv'` for a bare file name, `difflib`'s nearest name for a misspelling
    (`'moons'` -> `'two_moons'`). The command line's parser asks before it imports TensorFlow;
    `load_dataset` raises the same message.

    Args:
      spec: The dataset as given.

    Returns:
      The error message, or `None`.
    """
    kind, sep, _ = spec.partition(":")
    if spec in BUILTIN_DATASETS or (sep and kind in FILE_KINDS):
        return None
    hint = ""
    lowered = spec.lower()
    for ext in FILE_KINDS:
        if lowered.endswith("." + ext):
            hint = f" (did you mean '{ext}:{spec}'?)"
    if lowered.endswith((".tfrec", ".records")):
        hint = f" (did you mean 'tfrecord:{spec}'?)"
    if lowered.endswith((".txt", ".tsv")):
        hint = f" (did you mean 'csv:{spec}'?)"
    close = difflib.get_close_matches(lowered, BUILTIN_DATASETS, n=1)
    if not hint and close:
        hint = f" (did you mean '{close[0]}'?)"
    return (f"unknown dataset {spec!r}; expected one of {', '.join(BUILTIN_DATASETS)}, "
            f"or 'csv:PATH' / 'npy:PATH' / 'tfrecord:PATH' (a file or a glob of shards) for your own data{hint}")
