"""Real NVP's multi-scale architecture for images: couplings, squeezes and factoring out over `[H, W, C]`.

Per scale, in the data-to-latent direction (TFP's `inverse`), as in [1] (section 3.6):

```none
[h, w, c]       3 couplings with alternating checkerboard masks (each followed by a normalization;
                with mixing="1x1" each preceded by Glow's learned 1x1 convolution when c >= 2)
                squeeze                                            -> [h/2, w/2, 4c]
[h/2, w/2, 4c]  3 couplings with alternating channel-wise masks (each followed by a normalization)
                factor out: channels 2c..4c leave the flow; channels 0..2c go through the next scale
                unsqueeze                                          -> [h, w, c]
last scale:     4 couplings with alternating checkerboard masks only
```

**Factoring out with the latent in the event's shape.** The factored-out half passes through
the later scales unchanged (`FactorOut`: the next scale on the first `2c` channels, the
identity on the rest) and each scale undoes its squeeze at the end, so the latent `z` has the
data's shape `[H, W, C]` and the base is one standard normal over it. The density is the
paper's: the identity adds nothing to the log-determinant, and each factored-out variable
meets the standard normal base as it would in a separate base factor. The other way, TFP's
`Glow`'s, is a structured latent (`tfb.Split`/`tfb.Blockwise` and `tfb.Restructure` onto a
flat or tuple-valued base). We chose the first because the rest of the product takes a latent
of the event's shape: `FlowModel.sample` (`temperature * eps` for one base), the export's
`forward` and `inverse` signatures (`z [n, H, W, C]`), the plots, and `real_nvp`'s own models
all keep working, unchanged. The cost is a concatenation and a depth-to-space per scale.

References:
  [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. https://arxiv.org/abs/1605.08803
  [2] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks
from tfp_realnvp.bijectors.act_norm import ActNorm
from tfp_realnvp.bijectors.affine_coupling import AffineCoupling
from tfp_realnvp.bijectors.batch_normalization import BatchNormalization
from tfp_realnvp.bijectors.factor_out import FactorOut
from tfp_realnvp.bijectors.mixing import LUMixing, check_image_mixing, check_vector_mixing
from tfp_realnvp.bijectors.spline_coupling import MAX_BINS, SplineCoupling
from tfp_realnvp.bijectors.squeeze import Squeeze
from tfp_realnvp.choices import MIXINGS, TRANSFORMS
from tfp_realnvp.conditioners.resnet import NORMALIZATIONS, ResNetConditioner
from tfp_realnvp.flows.registry import register_flow
from tfp_realnvp.masks import channel_mask, checkerboard_mask

__all__ = [
    "FLOW_NORMALIZATIONS",
    "real_nvp_multiscale",
]

tfb = tfp.bijectors
tfd = tfp.distributions

FLOW_NORMALIZATIONS: tuple[str, ...] = ("batch", "actnorm", "none")
"""The bijector after each coupling: `BatchNormalization` (the paper's), `ActNorm` (Glow's), none."""


def _image_shape(event_shape: Sequence[int], num_scales: int) -> tuple[int, int, int]:
    shape = tuple(event_shape) if isinstance(event_shape, (tuple, list)) else (event_shape,)
    if len(shape) != 3 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in shape):
        raise ValueError(
            f"real_nvp_multiscale is a flow over images: event_shape must be [height, width, channels]; got "
            f"{event_shape!r} (use event_shape [8, 8, 1] for 8x8 grey images, or real_nvp for vectors)"
        )
    h, w, c = (int(n) for n in shape)
    step = 2 ** (num_scales - 1)
    if h % step or w % step or h // step < 2 or w // step < 2:
        raise ValueError(
            f"event shape [{h}, {w}, {c}] does not fit {num_scales} scales: height and width must be multiples of "
            f"2**(num_scales - 1) = {step} and leave at least 2x2 pixels at the last scale "
            f"(at most {_max_scales(h, w)} scales for {h}x{w})"
        )
    return h, w, c


def _max_scales(h: int, w: int) -> int:
    scales = 1
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= 2 and w // 2 >= 2:
        h, w, scales = h // 2, w // 2, scales + 1
    return scales


def real_nvp_multiscale(
    event_shape: Sequence[int],
    *,
    num_scales: int = 2,
    num_filters: int = 32,
    num_blocks: int = 2,
    num_checkerboard_couplings: int = 3,
    num_channel_couplings: int = 3,
    num_final_couplings: int = 4,
    normalization: str | None = "batch",
    conditioner_normalization: str | None = None,
    context_size: int = 0,
    transform: str = "affine",
    num_bins: int = 8,
    tail_bound: float = 3.0,
    mixing: str | None = "none",
    permutation: str = "none",
    log_scale_bound: str = "tanh",
    activation: str = "relu",
    seed: int | None = 0,
    dtype: str = "float32",
    validate_args: bool = False,
    name: str = "real_nvp_multiscale",
) -> tfd.TransformedDistribution:
    """Real NVP's multi-scale image density [1] over events `[H, W, C]`, on a standard normal base.

    `x = f(z)`, `z ~ N(0, I)` of the event's shape, with `f^{-1}` the scales of the module
    docstring: per scale (all but the last) `num_checkerboard_couplings` couplings with
    alternating checkerboard masks, a squeeze to `[h/2, w/2, 4c]`, `num_channel_couplings`
    couplings with alternating channel-wise masks, and half the channels factored out; the last
    scale `num_final_couplings` checkerboard couplings. So

    ```none
    log p(x) = log N(f^{-1}(x); 0, I) + sum over couplings and normalizations of log|det J|
    ```

    in TFP's convention (the bijector's `forward` is the generative direction). Each coupling
    is an `AffineCoupling` with a mask and a `ResNetConditioner` (its output starts at zero, so
    a new flow is the identity up to the normalizations), followed by a `normalization`
    bijector. Registered as the flow `"real_nvp_multiscale"`:
    `FlowModel(event_shape=(8, 8, 1), flow="real_nvp_multiscale", num_scales=2)`.

    Args:
      event_shape: `[H, W, C]`; `H` and `W` multiples of `2**(num_scales - 1)`, leaving at
        least 2x2 pixels at the last scale.
      num_scales: Number of scales. Defaults to 2 (8x8 images: 8x8, then 4x4).
      num_filters: Feature maps of each `ResNetConditioner`. Defaults to 32.
      num_blocks: Residual blocks of each `ResNetConditioner`. Defaults to 2.
      num_checkerboard_couplings: Checkerboard couplings before each squeeze. Defaults to 3.
      num_channel_couplings: Channel-wise couplings after each squeeze. Defaults to 3.
      num_final_couplings: Checkerboard couplings of the last scale. Defaults to 4.
      normalization: The bijector after each coupling: `"batch"` (`BatchNormalization`, the
        paper's; takes Keras's `training` flag), `"actnorm"` (`ActNorm`, initialised from the
        first training batch) or `"none"` (or None). Defaults to `"batch"`.
      conditioner_normalization: Normalization inside the conditioners: None or `"batch"`.
        Defaults to None.
      context_size: For a conditional density `p(x | context)`: the number of context
        features every conditioner takes, as constant input channels. The context then goes to
        every coupling through `bijector_kwargs=tfp_realnvp.route(dist.bijector, context=c)`
        (`FlowModel(context_size=...)` does this). Defaults to 0.
      transform: The couplings' elementwise map: `"affine"` (the paper's) or `"spline"`
        (`SplineCoupling`). Defaults to `"affine"`.
      num_bins: Bins of each spline (`transform="spline"`), in `[2, 64]`. Defaults to 8.
      tail_bound: The spline's box `[-B, B]` (`transform="spline"`). Defaults to 3.0.
      mixing: `"none"` (or None), or `"1x1"`: Glow's learned invertible 1x1 convolution
        (`LUMixing` over the channels, starting as a seeded permutation) before every coupling
        whose event has two channels or more.
        Defaults to `"none"`.
      permutation: `"none"` only: `real_nvp`'s `"lu"` mixes vectors (this flow's is
        `mixing="1x1"`); taken so an image event gets one clear error. Defaults to `"none"`.
      log_scale_bound: `"tanh"`, `"sigmoid"` or `"unbounded"`; see `AffineCoupling`
        (`transform="affine"` only). Defaults to `"tanh"`.
      activation: Hidden activation of the conditioners. Defaults to `"relu"`.
      seed: Seed of the conditioners' initial weights and the 1x1 convolutions' permutations.
        Defaults to 0.
      dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      validate_args: Passed to the bijectors. Defaults to `False`.
      name: Name of the distribution. Defaults to `"real_nvp_multiscale"`.

    Returns:
      A `tfd.TransformedDistribution` over `[H, W, C]` whose bijector is a `tfb.Chain` of
      couplings, normalizations, `Squeeze`s and a `FactorOut` per scale but the last.

    Raises:
      ValueError: For an event that is not `[H, W, C]` (`mixing="1x1"` on a vector event says
        so) or does not fit `num_scales`, a count below its minimum (1, or 0 for
        `num_channel_couplings`), an unknown `normalization`, `transform`, `mixing`,
        `log_scale_bound` or `dtype`, or a bad `num_bins` or `tail_bound`.

    Example:

    ```python
    dist = real_nvp_multiscale((8, 8, 1), num_scales=2, num_filters=16, num_blocks=1)
    x = dist.sample(4, seed=1)    # [4, 8, 8, 1]
    dist.log_prob(x)              # [4]
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
    """
    if checks.one_of("permutation", permutation, ("none", "lu")) == "lu":
        check_vector_mixing(checks.event_shape(event_shape))
    mixing = checks.one_of("mixing", "none" if mixing is None else mixing, MIXINGS)
    if mixing == "1x1":
        check_image_mixing(checks.event_shape(event_shape))
    num_scales = checks.integer("num_scales", num_scales, low=1)
    shape = _image_shape(event_shape, num_scales)
    counts = dict(
        num_filters=checks.integer("num_filters", num_filters, low=1),
        num_blocks=checks.integer("num_blocks", num_blocks, low=0),
        num_checkerboard_couplings=checks.integer("num_checkerboard_couplings", num_checkerboard_couplings, low=1),
        num_channel_couplings=checks.integer("num_channel_couplings", num_channel_couplings, low=0),
        num_final_couplings=checks.integer("num_final_couplings", num_final_couplings, low=1),
        context_size=checks.integer("context_size", context_size, low=0),
    )
    checks.one_of("transform", transform, TRANSFORMS)
    if transform == "spline":
        checks.integer("num_bins", num_bins, low=2, high=MAX_BINS)
        checks.number("tail_bound", tail_bound, positive=True)
    normalization = "none" if normalization is None else normalization
    if normalization not in FLOW_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {FLOW_NORMALIZATIONS}; got {normalization!r}")
    if conditioner_normalization not in NORMALIZATIONS:
        raise ValueError(f"conditioner_normalization must be one of {NORMALIZATIONS}; got {conditioner_normalization!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    builder = _Builder(num_scales=num_scales, normalization=normalization, transform=transform, num_bins=num_bins,
                       tail_bound=tail_bound, mixing=mixing,
                       conditioner_normalization=conditioner_normalization, log_scale_bound=log_scale_bound,
                       activation=activation, seed=seed, dtype=dtype, validate_args=validate_args, **counts)
    base = tfd.Sample(tfd.Normal(loc=tf.zeros([], dtype), scale=tf.ones([], dtype)), sample_shape=list(shape))
    return tfd.TransformedDistribution(
        distribution=base,
        bijector=builder.scale(shape, 0, name=f"{name}_chain"),
        validate_args=validate_args,
        name=name,
    )


class _Builder:
    """Builds the scales, giving every layer its own seed and every bijector its own name."""

    def __init__(self, *, num_scales: int, seed: int | None, **settings: Any) -> None:
        self.num_scales = num_scales
        self.settings = settings
        self._rng = None if seed is None else np.random.default_rng([seed, 2])

    def _seed(self) -> int | None:
        return None if self._rng is None else int(self._rng.integers(2**30))

    def _coupling(self, mask: np.ndarray, name: str, *, checkerboard: bool) -> list[tfb.Bijector]:
        s = self.settings
        spline = s["transform"] == "spline"
        conditioner = ResNetConditioner(
            s["num_filters"], s["num_blocks"],
            # A spline takes 3K - 1 parameters per entry, from the (shift, log_scale) pair's channels.
            output_channels=-(-SplineCoupling.params_size(mask.shape, s["num_bins"]) // 2) if spline else None,
            # A checkerboard's squares look alike to a convolution: show it which ones it sees.
            mask=mask[..., :1] if checkerboard else None, context_size=s["context_size"],
            normalization=s["conditioner_normalization"], activation=s["activation"], seed=self._seed(),
            dtype=s["dtype"], name=f"{name}_conditioner",
        )
        steps: list[tfb.Bijector] = []
        if s["mixing"] == "1x1" and mask.shape[-1] > 1:  # one channel: nothing to mix
            steps.append(LUMixing(mask.shape, seed=self._seed(), dtype=s["dtype"], validate_args=s["validate_args"],
                                  name=f"{name}_1x1"))
        if spline:
            steps.append(SplineCoupling(conditioner, mask=mask, num_bins=s["num_bins"], tail_bound=s["tail_bound"],
                                        validate_args=s["validate_args"], name=name))
        else:
            steps.append(AffineCoupling(conditioner, mask=mask, log_scale_bound=s["log_scale_bound"],
                                        validate_args=s["validate_args"], name=name))
        kind = s["normalization"]
        if kind != "none":
            norm_class = BatchNormalization if kind == "batch" else ActNorm
            steps.append(norm_class(mask.shape, dtype=s["dtype"], validate_args=s["validate_args"],
                                    name=f"{name}_{'batch_norm' if kind == 'batch' else 'act_norm'}"))
        return steps

    def scale(self, shape: tuple[int, int, int], level: int, *, name: str) -> tfb.Bijector:
        """Scale `level` and all after it, over `shape`; steps listed in the data-to-latent order."""
        s = self.settings
        h, w, c = shape
        last = level == self.num_scales - 1
        steps: list[tfb.Bijector] = []
        for k in range(s["num_final_couplings"] if last else s["num_checkerboard_couplings"]):
            steps += self._coupling(checkerboard_mask(shape, parity=k % 2), f"scale_{level}_checkerboard_{k}",
                                    checkerboard=True)
        if not last:
            squeezed = (h // 2, w // 2, 4 * c)
            steps.append(tfb.Invert(Squeeze(), name=f"scale_{level}_squeeze"))
            for k in range(s["num_channel_couplings"]):
                steps += self._coupling(channel_mask(squeezed, parity=k % 2), f"scale_{level}_channel_{k}",
                                        checkerboard=False)
            inner = self.scale((h // 2, w // 2, 2 * c), level + 1, name=f"scale_{level + 1}")
            steps.append(FactorOut(inner, num_kept=2 * c, event_shape=squeezed,
                                   validate_args=s["validate_args"], name=f"scale_{level}_factor_out"))
            steps.append(Squeeze(name=f"scale_{level}_unsqueeze"))  # its inverse undoes the squeeze
        # tfb.Chain applies its first bijector's inverse first: the steps in data-to-latent order.
        return tfb.Chain(steps, validate_args=s["validate_args"], name=name)


register_flow("real_nvp_multiscale", real_nvp_multiscale)
