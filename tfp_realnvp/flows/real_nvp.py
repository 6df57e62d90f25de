"""The Real NVP flow over vectors: couplings and permutations on a standard normal.

```none
x = g(z) = c_K o p_{K-1} o ... o p_1 o c_1 (z),     z ~ N(0, I_D)
log p(x) = log N(g^{-1}(x); 0, I) + log|det d g^{-1}/dx|
         = log N(z; 0, I) - sum_k sum s_k(.)          (affine: each coupling's log-scales, at its input)
```

with `c_k` couplings (the first `D // 2` coordinates unchanged): affine (`AffineCoupling`, the
paper's) or rational-quadratic splines (`SplineCoupling`, `transform="spline"`); and `p_k`
permutations (`tfb.Permute`, volume-preserving) that move the unchanged half, or learned LU
linear maps (`LUMixing`, `permutation="lu"`, log-det `sum log|diag U|`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks
from tfp_realnvp.bijectors.affine_coupling import AffineCoupling
from tfp_realnvp.bijectors.coupling import Coupling
from tfp_realnvp.bijectors.mixing import LUMixing, check_image_mixing, check_vector_mixing
from tfp_realnvp.bijectors.spline_coupling import MAX_BINS, SplineCoupling
from tfp_realnvp.choices import MIXINGS, PERMUTATIONS, TRANSFORMS
from tfp_realnvp.conditioners.mlp import MLPConditioner
from tfp_realnvp.flows.registry import register_flow
from tfp_realnvp.tracking import parts

__all__ = [
    "PERMUTATIONS",
    "coupling_layers",
    "permutation_indices",
    "real_nvp",
]

tfb = tfp.bijectors
tfd = tfp.distributions


def permutation_indices(
    event_size: int, num_couplings: int, *, permutation: str = "reverse", seed: int | None = 0
) -> list[np.ndarray]:
    """The permutations placed between consecutive couplings (`num_couplings - 1` of them).

    `"reverse"` flips the event each time. `"random"` draws an independent permutation per
    position from `np.random.default_rng(seed)`. A `FlowModel` keeps the drawn indices in its
    config, so a saved model does not depend on numpy drawing the same ones again.

    Raises:
      ValueError: For an unknown `permutation` (or `"lu"`, a learned map, not indices), or
        `"random"` with `seed=None`.
    """
    if permutation == "lu":
        raise ValueError("permutation='lu' is a learned linear map (LUMixing), not a list of indices")
    if permutation == "reverse":
        return [np.arange(event_size)[::-1].copy() for _ in range(num_couplings - 1)]
    if permutation == "random":
        if seed is None:
            raise ValueError("permutation='random' needs an integer seed, so the flow can be rebuilt")
        rng = np.random.default_rng(seed)
        return [rng.permutation(event_size) for _ in range(num_couplings - 1)]
    raise ValueError(f"permutation must be one of {PERMUTATIONS} or a list of index lists; got {permutation!r}")


def _explicit_permutations(permutation: Sequence[Sequence[int]], event_size: int, num_couplings: int) -> list[np.ndarray]:
    """Checks explicit permutation indices: `num_couplings - 1` permutations of `range(event_size)`."""
    indices = [np.asarray(p) for p in permutation]
    if len(indices) != num_couplings - 1:
        raise ValueError(
            f"permutation holds {len(indices)} index lists; expected num_couplings - 1 = {num_couplings - 1}"
        )
    for k, p in enumerate(indices):
        if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer) or sorted(p.tolist()) != list(range(event_size)):
            raise ValueError(
                f"permutation[{k}] must be a permutation of 0..{event_size - 1}; got {p.tolist()!r}"
            )
    return [p.astype(np.int64) for p in indices]


def _event_size(event_shape: int | Sequence[int]) -> int:
    if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
        shape: tuple[Any, ...] = (int(event_shape),)
    else:
        shape = tuple(event_shape) if isinstance(event_shape, (tuple, list)) else (event_shape,)
    if len(shape) != 1 or isinstance(shape[0], bool) or not isinstance(shape[0], (int, np.integer)) or shape[0] < 2:
        raise ValueError(
            f"real_nvp is a flow over vectors: event_shape must be an integer >= 2 or [D] with D >= 2; got "
            f"{event_shape!r} (flatten other events, or register a flow of your own for them)"
        )
    return int(shape[0])


def real_nvp(
    event_shape: int | Sequence[int],
    *,
    num_couplings: int = 8,
    hidden_units: Sequence[int] = (128, 128),
    permutation: str | Sequence[Sequence[int]] = "reverse",
    seed: int | None = 0,
    transform: str = "affine",
    num_bins: int = 8,
    tail_bound: float = 3.0,
    mixing: str = "none",
    log_scale_bound: str = "tanh",
    activation: str = "relu",
    dtype: str = "float32",
    context_size: int = 0,
    validate_args: bool = False,
    name: str = "real_nvp",
) -> tfd.TransformedDistribution:
    """A Real NVP density over vectors: couplings and permutations on a standard normal.

    The distribution is `x = f(z)`, `z ~ N(0, I)`, with `f = c_K o p_{K-1} o ... o p_1 o c_1`
    (couplings `c_k`, permutations `p_k`), so `log_prob(x) = log N(f^{-1}(x)) + log|det
    d f^{-1}/dx|`: the paper's training objective, with TFP's convention that the bijector's
    `forward` is the generative direction. Each coupling leaves the first `event_size // 2`
    coordinates unchanged, and the permutations move them so all are transformed.

    Registered as the flow `"real_nvp"`: `FlowModel(2, flow="real_nvp", num_couplings=8)`.

    Args:
      event_shape: Number of features `D`, at least 2 (or `[D]`).
      num_couplings: Number of couplings. Defaults to 8.
      hidden_units: Hidden widths of each coupling's `MLPConditioner`. Defaults to
        `(128, 128)`.
      permutation: `"reverse"`, `"random"` (drawn from `seed`), `"lu"` (a learned
        LU-decomposed linear map, `LUMixing`, starting as a permutation drawn from `seed`), or
        the `num_couplings - 1` permutations themselves, as lists of indices. Defaults to
        `"reverse"`.
      seed: Seed of the random permutations and of the conditioners' initial weights.
        Defaults to 0.
      transform: The couplings' elementwise map: `"affine"` (`AffineCoupling`, the paper's) or
        `"spline"` (`SplineCoupling`, Neural Spline Flows' rational-quadratic spline). Defaults
        to `"affine"`.
      num_bins: Bins of each spline (`transform="spline"`), in `[2, 64]`. Defaults to 8.
      tail_bound: The spline's box `[-B, B]` (identity outside; `transform="spline"`), a finite
        number > 0. Defaults to 3.0.
      mixing: `"none"` only: Glow's `"1x1"` mixing is `real_nvp_multiscale`'s, for images (this
        flow's learned mixing is `permutation="lu"`); taken so the same options can be tried on
        either flow and a vector event gets one clear error. Defaults to `"none"`.
      log_scale_bound: `"tanh"`, `"sigmoid"` or `"unbounded"`; see `AffineCoupling`
        (`transform="affine"` only). Defaults to `"tanh"`.
      activation: Hidden activation of the conditioners. Defaults to `"relu"`.
      dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      context_size: For a conditional density `p(x | context)`: the number of context
        features each conditioner takes beside `x1`. The context then goes to every coupling
        through TFP's `bijector_kwargs`, routed by name: `dist.log_prob(x,
        bijector_kwargs=tfp_realnvp.route(dist.bijector, context=c))`. Defaults to 0.
      validate_args: Passed to the bijectors. Defaults to `False`.
      name: Name of the distribution. Defaults to `"real_nvp"`.

    Returns:
      A `tfd.TransformedDistribution` whose bijector is a `tfb.Chain` of couplings and
      `tfb.Permute` (or `LUMixing`); its `trainable_variables` holds every weight.

    Raises:
      ValueError: For an event that is not a vector of size >= 2 (`permutation="lu"` on an
        image event says so), `num_couplings < 1`, a non-float `dtype`, an unknown
        `transform`, `num_bins` outside `[2, 64]`, a `tail_bound` that is not a finite number
        > 0, or an unknown or malformed `permutation` or `log_scale_bound`.

    Example:

    ```python
    dist = real_nvp(2, num_couplings=4, hidden_units=(64, 64))
    x = dist.sample(10, seed=1)
    dist.log_prob(x)  # shape [10]
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
    """
    if checks.one_of("mixing", "none" if mixing is None else mixing, MIXINGS) == "1x1":
        check_image_mixing(checks.event_shape(event_shape))
    learned = isinstance(permutation, str) and permutation == "lu"
    if learned:
        check_vector_mixing(checks.event_shape(event_shape))
    event_size = _event_size(event_shape)
    num_couplings = checks.integer("num_couplings", num_couplings, low=1)
    dtype = checks.dtype(dtype)
    context_size = checks.context_size(context_size)
    checks.one_of("transform", transform, TRANSFORMS)
    if transform == "spline":
        checks.integer("num_bins", num_bins, low=2, high=MAX_BINS)
        checks.number("tail_bound", tail_bound, positive=True)
    if learned:
        permutations = []
    elif isinstance(permutation, str):
        permutations = permutation_indices(event_size, num_couplings, permutation=permutation, seed=seed)
    else:
        permutations = _explicit_permutations(permutation, event_size, num_couplings)
    num_masked = event_size // 2
    layer_seeds = (
        [None] * num_couplings
        if seed is None
        else np.random.default_rng([seed, 1]).integers(2**30, size=num_couplings).tolist()
    )
    transformed = event_size - num_masked
    # A spline takes 3K - 1 parameters per entry, from the conditioner's (shift, log_scale) pair.
    outputs = transformed if transform == "affine" else -(-SplineCoupling.params_size((transformed,), num_bins) // 2)
    mixing_seeds = (
        [None] * num_couplings
        if seed is None
        else np.random.default_rng([seed, 4]).integers(2**30, size=num_couplings).tolist()
    )
    steps = []  # in the generative (forward) order: c_1, p_1, c_2, ..., c_K
    for k in range(num_couplings):
        conditioner = MLPConditioner(
            hidden_units,
            output_shape=(outputs,),
            activation=activation,
            context_size=int(context_size),
            dtype=dtype,
            seed=layer_seeds[k],
            name=f"conditioner_{k}",
        )
        split = dict(num_masked=num_masked, event_shape=(event_size,), validate_args=validate_args)
        if transform == "affine":
            coupling = AffineCoupling(conditioner, log_scale_bound=log_scale_bound, name=f"affine_coupling_{k}",
                                      **split)
        else:
            coupling = SplineCoupling(conditioner, num_bins=num_bins, tail_bound=tail_bound,
                                      name=f"spline_coupling_{k}", **split)
        steps.append(coupling)
        if k < num_couplings - 1 and learned:
            steps.append(LUMixing((event_size,), seed=mixing_seeds[k], dtype=dtype, validate_args=validate_args,
                                  name=f"lu_mixing_{k}"))
        elif k < num_couplings - 1:
            steps.append(
                tfb.Permute(permutations[k], validate_args=validate_args, name=f"permute_{k}")
            )
    base = tfd.Sample(
        tfd.Normal(loc=tf.zeros([], dtype), scale=tf.ones([], dtype)), sample_shape=[event_size]
    )
    return tfd.TransformedDistribution(
        distribution=base,
        bijector=tfb.Chain(steps[::-1], validate_args=validate_args, name=f"{name}_chain"),
        validate_args=validate_args,
        name=name,
    )


def coupling_layers(bijector_or_distribution: tfb.Bijector | tfd.Distribution) -> Iterator[Coupling]:
    """Yields every coupling (`AffineCoupling`, `SplineCoupling`) inside a bijector or distribution, in
    the order of its arguments.

    For a `real_nvp` flow that is the generative order reversed (`tfb.Chain` lists its last
    bijector first): the coupling applied last to the latent comes first.
    """
    for part in parts(bijector_or_distribution):
        if isinstance(part, Coupling):
            yield part


def _resolve_options(event_shape: tuple[int, ...], seed: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """`permutation="random"` becomes the drawn indices, so a saved model rebuilds the same flow."""
    if options.get("permutation") == "random":
        num_couplings = options.get("num_couplings", _DEFAULT_COUPLINGS)
        drawn = permutation_indices(_event_size(event_shape), num_couplings, permutation="random", seed=seed)
        options["permutation"] = [p.tolist() for p in drawn]
    return options


_DEFAULT_COUPLINGS = inspect.signature(real_nvp).parameters["num_couplings"].default

register_flow("real_nvp", real_nvp, resolve_options=_resolve_options)
