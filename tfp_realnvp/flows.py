"""Builders: Real NVP flows as standard TFP objects."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.affine_coupling import AffineCoupling
from tfp_realnvp.conditioners import MLPConditioner

__all__ = [
    "PERMUTATIONS",
    "coupling_layers",
    "keras_layers",
    "permutation_indices",
    "real_nvp",
]

tfb = tfp.bijectors
tfd = tfp.distributions

PERMUTATIONS = ("reverse", "random")


def permutation_indices(
    event_size: int, num_couplings: int, *, permutation: str = "reverse", seed: int | None = 0
) -> list[np.ndarray]:
    """The permutations placed between consecutive couplings (`num_couplings - 1` of them).

    `"reverse"` flips the event each time. `"random"` draws an independent permutation per
    position from `np.random.default_rng(seed)`, so the same seed always gives the same flow.

    Raises:
      ValueError: For an unknown `permutation`, or `"random"` with `seed=None`.
    """
    if permutation == "reverse":
        return [np.arange(event_size)[::-1].copy() for _ in range(num_couplings - 1)]
    if permutation == "random":
        if seed is None:
            raise ValueError("permutation='random' needs an integer seed, so the flow can be rebuilt")
        rng = np.random.default_rng(seed)
        return [rng.permutation(event_size) for _ in range(num_couplings - 1)]
    raise ValueError(f"permutation must be one of {PERMUTATIONS}; got {permutation!r}")


def real_nvp(
    event_size: int,
    *,
    num_couplings: int = 8,
    hidden_units: Sequence[int] = (128, 128),
    permutation: str = "reverse",
    seed: int | None = 0,
    log_scale_bound: str = "tanh",
    activation: str = "relu",
    dtype: str = "float32",
    validate_args: bool = False,
    name: str = "real_nvp",
) -> tfd.TransformedDistribution:
    """A Real NVP density over vectors: affine couplings and permutations on a standard normal.

    The distribution is `x = f(z)`, `z ~ N(0, I)`, with `f = c_K o p_{K-1} o ... o p_1 o c_1`
    (couplings `c_k`, permutations `p_k`), so `log_prob(x) = log N(f^{-1}(x)) + log|det
    d f^{-1}/dx|`: the paper's training objective, with TFP's convention that the bijector's
    `forward` is the generative direction. Each coupling leaves the first `event_size // 2`
    coordinates unchanged, and the permutations move them so all are transformed.

    Args:
      event_size: Number of features `D`, at least 2.
      num_couplings: Number of affine couplings. Defaults to 8.
      hidden_units: Hidden widths of each coupling's `MLPConditioner`. Defaults to
        `(128, 128)`.
      permutation: `"reverse"` or `"random"` (seeded). Defaults to `"reverse"`.
      seed: Seed of the random permutations and of the conditioners' initial weights.
        Defaults to 0.
      log_scale_bound: `"tanh"`, `"sigmoid"` or `"unbounded"`; see `AffineCoupling`.
        Defaults to `"tanh"`.
      activation: Hidden activation of the conditioners. Defaults to `"relu"`.
      dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      validate_args: Passed to the bijectors. Defaults to `False`.
      name: Name of the distribution. Defaults to `"real_nvp"`.

    Returns:
      A `tfd.TransformedDistribution` whose bijector is a `tfb.Chain` of `AffineCoupling` and
      `tfb.Permute`; its `trainable_variables` holds every conditioner weight.

    Raises:
      ValueError: For `event_size < 2`, `num_couplings < 1`, a non-float `dtype`, or an
        unknown `permutation` or `log_scale_bound`.

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
    if isinstance(event_size, bool) or not isinstance(event_size, (int, np.integer)) or event_size < 2:
        raise ValueError(f"event_size must be an integer >= 2; got {event_size!r}")
    if num_couplings < 1:
        raise ValueError(f"num_couplings must be >= 1; got {num_couplings!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    event_size = int(event_size)
    permutations = permutation_indices(event_size, num_couplings, permutation=permutation, seed=seed)
    num_masked = event_size // 2
    layer_seeds = (
        [None] * num_couplings
        if seed is None
        else np.random.default_rng([seed, 1]).integers(2**30, size=num_couplings).tolist()
    )
    steps = []  # in the generative (forward) order: c_1, p_1, c_2, ..., c_K
    for k in range(num_couplings):
        conditioner = MLPConditioner(
            hidden_units,
            output_shape=(event_size - num_masked,),
            activation=activation,
            dtype=dtype,
            seed=layer_seeds[k],
            name=f"conditioner_{k}",
        )
        steps.append(
            AffineCoupling(
                conditioner,
                num_masked=num_masked,
                event_shape=(event_size,),
                log_scale_bound=log_scale_bound,
                validate_args=validate_args,
                name=f"affine_coupling_{k}",
            )
        )
        if k < num_couplings - 1:
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


def coupling_layers(bijector_or_distribution: tfb.Bijector | tfd.Distribution) -> Iterator[AffineCoupling]:
    """Yields every `AffineCoupling` inside a bijector or distribution (through Chain, Invert)."""
    bijector = getattr(bijector_or_distribution, "bijector", bijector_or_distribution)
    if isinstance(bijector, AffineCoupling):
        yield bijector
    elif isinstance(bijector, tfb.Invert):
        yield from coupling_layers(bijector.bijector)
    elif isinstance(bijector, tfb.Composition):
        for part in bijector.bijectors:
            yield from coupling_layers(part)


def keras_layers(bijector_or_distribution: tfb.Bijector | tfd.Distribution) -> list[keras.layers.Layer]:
    """The Keras layers holding a flow's weights, for a `keras.Model` to track."""
    return [layer for coupling in coupling_layers(bijector_or_distribution) for layer in coupling.keras_layers]
