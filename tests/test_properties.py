"""Properties of every bijector, on examples that hypothesis draws: FAMILIES is the registry.

A family draws a bijector at random (its structure, dtype and weights) for the properties to
check: the round trip both ways, `fldj == -ildj`, the log-determinant against autodiff in
float64, shapes and dtypes over batch shapes none/one/several, and finite results for inputs up
to 1e4 and extreme parameters (a learned tanh scale of 1e3, conditioner outputs of 1e6 and
more). A new bijector joins every property by adding one entry to FAMILIES; the image
bijectors (squeeze, batch normalization, ActNorm, the multi-scale flow) joined that way.

The example budget is fixed and the draws derandomized (the "tfp_realnvp" profile registered
in conftest.py), so CI runs the same examples every time: `PROPERTIES x EXAMPLES` below is the
count, e.g. for the closing note of a change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st

from tfp_realnvp import (ActNorm, AffineCoupling, BatchNormalization, LUMixing, MLPConditioner, SplineCoupling, Squeeze,
                         real_nvp, real_nvp_multiscale)
from tfp_realnvp.bijectors.preprocessing import Preprocessing
from tfp_realnvp.bounds import MAX_LOG_SCALE, TanhLogScale
from tfp_realnvp.bijectors.coupling import Coupling
from tfp_realnvp.choices import LOG_SCALE_BOUNDS, MIXINGS, PERMUTATIONS, TRANSFORMS
from tfp_realnvp.tracking import parts

tfb, tfd = tfp.bijectors, tfp.distributions

BATCH_SHAPES = [(), (1,), (3,), (2, 3)]  # none, one, several (and two batch axes)
BOUNDED = tuple(b for b in LOG_SCALE_BOUNDS if b != "unbounded")  # the bounds that promise finiteness
EXTREME_SCALE = 1e3  # a learned tanh scale c grown far past MAX_LOG_SCALE
EXTREME_GAIN = 1e6  # on the conditioner's raw log-scale: tanh and log-sigmoid saturate
MAGNITUDE = 1e4  # the largest input the finiteness property promises to handle


@dataclasses.dataclass(frozen=True)
class Case:
    """A drawn bijector and what the properties need to know about it.

    Attributes:
      bijector: The bijector; `forward` maps its latent side to data.
      event_shape: Its event shape.
      tolerance: `rtol` (= `atol`) of a float32 round trip; float64 uses `1e-9` (see `_tol`).
      distribution: A distribution over the data side whose `log_prob` must be finite too.
      data_range: Where the data side's inputs may lie, `(low, high)`, for the finiteness property.
      data_shape: The data side's event shape, when `forward` changes it (a squeeze).
    """

    bijector: tfb.Bijector
    event_shape: tuple[int, ...]
    tolerance: float
    distribution: tfd.Distribution | None = None
    data_range: tuple[float, float] = (-MAGNITUDE, MAGNITUDE)
    data_shape: tuple[int, ...] | None = None

    @property
    def data_event(self) -> tuple[int, ...]:
        return self.data_shape or self.event_shape


@dataclasses.dataclass(frozen=True)
class Family:
    """How to draw one kind of bijector: `spec(dtype, extreme)` is a strategy of plain specs (what
    hypothesis prints for a failing example), `build(spec)` makes the Case. With `extreme`, the
    bijector's parameters are extreme and it must still keep every result finite."""

    spec: Callable[[str, bool], st.SearchStrategy[dict]]
    build: Callable[[dict], Case]

    def draw(self, data: st.DataObject, dtype: str, extreme: bool = False) -> Case:
        return self.build(data.draw(self.spec(dtype, extreme), label="spec"))


def _randomize(variables, seed: int, scale: float = 0.4) -> None:
    """Random weights: a fresh coupling is the identity, which proves little."""
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(scale * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))


def _make_extreme(couplings, seed: int) -> None:
    """A grown tanh scale of +-1e3 and conditioner raw log-scales of 1e6 and more; for a spline, every
    raw parameter (bin widths, heights, derivatives) of 1e6 and more."""
    rng = np.random.default_rng(seed + 1)
    for coupling in couplings:
        if isinstance(coupling, SplineCoupling):
            for w in coupling.conditioner.weights[-2:]:  # the last layer's kernel and bias: all outputs
                w.assign(w.numpy() * EXTREME_GAIN + rng.choice([-1.0, 1.0], size=w.shape) * EXTREME_GAIN)
            continue
        for layer in coupling.keras_layers:
            if isinstance(layer, TanhLogScale):
                sign = rng.choice([-1.0, 1.0], size=layer.scale.shape)
                layer.scale.assign((EXTREME_SCALE * sign).astype(layer.scale.dtype))
            elif isinstance(layer, MLPConditioner):
                (kernel,) = [w for w in layer.weights if w.path.endswith("shift_and_log_scale/kernel")]
                value = np.array(kernel.numpy())
                half = value.shape[1] // 2  # columns [half:] are the raw log-scale
                value[:, half:] *= EXTREME_GAIN
                kernel.assign(value)


def _bounds(extreme: bool, dtype: str) -> st.SearchStrategy[str]:
    # Unbounded log-scales in float64 only: float32 has no accuracy to promise them. Nothing caps
    # how far their inverse expands float32's rounding (e^15 in volume over three couplings of
    # random weights: a round trip off by 1e-3); the default bounds are what float32 relies on.
    return st.sampled_from(BOUNDED if extreme or dtype == "float32" else LOG_SCALE_BOUNDS)


def _small_shape(max_rank: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return st.integers(1, max_rank).flatmap(
        lambda rank: st.lists(st.integers(1, 3), min_size=rank, max_size=rank).map(tuple))


@st.composite
def _affine_coupling_spec(draw: st.DrawFn, dtype: str, extreme: bool, max_rank: int = 3) -> dict:
    """A count (vectors) or a boolean mask (any rank, random entries) over a small event."""
    shape = draw(_small_shape(max_rank))
    if math.prod(shape) < 2:
        shape = (*shape[:-1], 2)
    size = math.prod(shape)
    spec = dict(dtype=dtype, extreme=extreme, event_shape=shape, seed=draw(st.integers(0, 2**16)),
                hidden_units=tuple(draw(st.lists(st.sampled_from([4, 8]), min_size=1, max_size=2))),
                log_scale_bound=draw(_bounds(extreme, dtype)))
    if len(shape) == 1 and draw(st.booleans()):
        return {**spec, "num_masked": draw(st.integers(1, size - 1)) * draw(st.sampled_from([1, -1]))}
    order = draw(st.permutations(range(size)))
    return {**spec, "unchanged": tuple(sorted(order[:draw(st.integers(1, size - 1))]))}


def _affine_coupling(spec: dict) -> Case:
    shape, dtype, seed, hidden = spec["event_shape"], spec["dtype"], spec["seed"], spec["hidden_units"]
    if "num_masked" in spec:
        d = spec["num_masked"]
        conditioner = MLPConditioner(hidden, output_shape=(shape[0] - abs(d),), dtype=dtype, seed=seed)
        coupling = AffineCoupling(conditioner, num_masked=d, event_shape=shape, log_scale_bound=spec["log_scale_bound"])
    else:
        mask = np.isin(np.arange(math.prod(shape)), spec["unchanged"]).reshape(shape)
        conditioner = MLPConditioner(hidden, event_ndims=len(shape), dtype=dtype, seed=seed)
        coupling = AffineCoupling(conditioner, mask=mask, log_scale_bound=spec["log_scale_bound"])
    _randomize(coupling.trainable_variables, seed)
    if spec["extreme"]:
        _make_extreme([coupling], seed)
    # float32 through one coupling with |s| <= 1 (tanh of a random raw times c = 1): a few ulps.
    return Case(coupling, shape, tolerance=1e-5)


def _spline_coupling_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    # Events of rank <= 2 (at most 9 entries): the float64 autodiff Jacobian of a spline is slow to trace.
    return _affine_coupling_spec(dtype, extreme, max_rank=2).flatmap(lambda spec: st.fixed_dictionaries(dict(
        num_bins=st.integers(2, 5), tail_bound=st.sampled_from([1.0, 3.0]))).map(lambda more: {**spec, **more}))


def _spline_coupling(spec: dict) -> Case:
    """A rational-quadratic spline coupling: a count or a mask, few bins, a small or the default box."""
    shape, dtype, seed, hidden = spec["event_shape"], spec["dtype"], spec["seed"], spec["hidden_units"]
    options = dict(num_bins=spec["num_bins"], tail_bound=spec["tail_bound"])
    if "num_masked" in spec:
        d = spec["num_masked"]
        outputs = -(-SplineCoupling.params_size((shape[0] - abs(d),), spec["num_bins"]) // 2)
        conditioner = MLPConditioner(hidden, output_shape=(outputs,), dtype=dtype, seed=seed)
        coupling = SplineCoupling(conditioner, num_masked=d, event_shape=shape, **options)
    else:
        mask = np.isin(np.arange(math.prod(shape)), spec["unchanged"]).reshape(shape)
        outputs = -(-SplineCoupling.params_size(shape, spec["num_bins"]) // 2)
        conditioner = MLPConditioner(hidden, output_shape=(*shape[:-1], outputs), event_ndims=len(shape),
                                     dtype=dtype, seed=seed)
        coupling = SplineCoupling(conditioner, mask=mask, **options)
    _randomize(coupling.trainable_variables, seed)
    if spec["extreme"]:
        _make_extreme([coupling], seed)
    # float32 through one spline of random weights: slopes above ~1e-2, so eps * B / slope ~ 1e-4.
    return Case(coupling, shape, tolerance=1e-3)


def _lu_mixing_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict(
        dtype=st.just(dtype), seed=st.integers(0, 2**16),
        event_shape=st.one_of(st.integers(1, 5).map(lambda d: (d,)), st.tuples(st.just(2), st.just(2),
                                                                               st.integers(1, 3)))))


def _lu_mixing(spec: dict) -> Case:
    """A learned LU linear map (vectors) or 1x1 convolution (images), with random factors."""
    mixing = LUMixing(spec["event_shape"], seed=spec["seed"], dtype=spec["dtype"])
    _randomize(mixing.trainable_variables, spec["seed"])
    # float32 through W and W^-1 of factors of scale 0.4 over at most 5 channels: ~1e-6.
    return Case(mixing, spec["event_shape"], tolerance=1e-5)


def _real_nvp_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict(
        dtype=st.just(dtype), extreme=st.just(extreme), event_size=st.integers(2, 5), seed=st.integers(0, 2**16),
        num_couplings=st.integers(1, 3), permutation=st.sampled_from(PERMUTATIONS),
        transform=st.sampled_from(TRANSFORMS), log_scale_bound=_bounds(extreme, dtype)))


def _real_nvp(spec: dict) -> Case:
    """Couplings (affine or spline) and permutations (or LU maps) on a normal base, as a distribution."""
    dist = real_nvp(spec["event_size"], num_couplings=spec["num_couplings"], hidden_units=(8,), seed=spec["seed"],
                    dtype=spec["dtype"], permutation=spec["permutation"], log_scale_bound=spec["log_scale_bound"],
                    transform=spec["transform"], num_bins=4)
    _randomize(dist.trainable_variables, spec["seed"])
    if spec["extreme"]:
        _make_extreme([b for b in dist.bijector.bijectors if isinstance(b, Coupling)], spec["seed"])
    # float32 through up to 3 couplings, each a few ulps on values grown by up to e^3 (affine), or
    # ~1e-4 through a spline's shallowest slopes: ~1e-5 and ~3e-4 in all.
    return Case(dist.bijector, (spec["event_size"],), tolerance=1e-4 if spec["transform"] == "affine" else 1e-3,
                distribution=dist)


def _preprocessing_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    # alpha 1e-6 puts float32's rounding of alpha + (1 - alpha) v to 1 within reach.
    return st.fixed_dictionaries(dict(
        dtype=st.just(dtype), event_shape=_small_shape(), seed=st.integers(0, 2**16), standardize=st.booleans(),
        integer_levels=st.one_of(st.none(), st.integers(2, 256)),
        logit_alpha=st.one_of(st.none(), st.sampled_from([1e-6, 0.05, 0.2]))))


def _preprocessing(spec: dict) -> Case:
    """Standardisation, integer levels (dequantized data) and Real NVP's logit, in any combination."""
    shape, dtype, levels, alpha = spec["event_shape"], spec["dtype"], spec["integer_levels"], spec["logit_alpha"]
    layer = Preprocessing(shape, standardize=spec["standardize"], integer_levels=levels, logit_alpha=alpha,
                          dtype=dtype)
    rng = np.random.default_rng(spec["seed"])
    # Statistics as adapt() leaves them; moderate, so the latent side's N(0, 1) stays off the
    # sigmoid's flat tails (where any float32 round trip loses the latent value).
    layer.mean.assign(rng.uniform(-1.0, 1.0, shape).astype(dtype))
    layer.std.assign(rng.uniform(0.5, 2.0, shape).astype(dtype))
    bounded = alpha is not None or levels is not None
    data_range = (0.0, float(levels or 1)) if bounded else (-MAGNITUDE, MAGNITUDE)
    # float32 logit: a latent value of 4 std maps to 1 - sigmoid(~9) ~ 1e-4, known to ~6e-8 / 1e-4.
    return Case(layer.bijector(), shape, tolerance=1e-3 if alpha is not None else 1e-5, data_range=data_range)


def _image_shape(min_side: int = 2) -> st.SearchStrategy[tuple[int, int, int]]:
    """`[H, W, C]` with even sides (what a squeeze needs)."""
    side = st.sampled_from([s for s in (2, 4) if s >= min_side])
    return st.tuples(side, side, st.integers(1, 3))


def _squeeze_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict(dtype=st.just(dtype), event_shape=_image_shape()))


def _squeeze(spec: dict) -> Case:
    # A permutation of the entries: exact in any dtype.
    h, w, c = spec["event_shape"]
    return Case(Squeeze(), (h, w, c), tolerance=0.0, data_shape=(h // 2, w // 2, 4 * c))


def _normalization_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict(
        dtype=st.just(dtype), extreme=st.just(extreme), event_shape=_small_shape(), seed=st.integers(0, 2**16),
        kind=st.sampled_from(["batch", "actnorm"])))


def _normalization(spec: dict) -> Case:
    """Batch normalization in inference (its running statistics) or ActNorm, with random weights."""
    shape, dtype, seed = spec["event_shape"], spec["dtype"], spec["seed"]
    bijector = (BatchNormalization(shape, dtype=dtype) if spec["kind"] == "batch" else ActNorm(shape, dtype=dtype))
    _randomize(bijector.trainable_variables, seed)
    if spec["kind"] == "batch":
        channels = bijector.moving_variance.shape
        rng = np.random.default_rng(seed + 1)
        bijector.moving_mean.assign(rng.uniform(-1.0, 1.0, channels).astype(dtype))
        # Extreme: a channel that never varied (variance 0), scaled by 1 / sqrt(epsilon) = 100.
        variance = np.zeros(channels) if spec["extreme"] else rng.uniform(0.5, 2.0, channels)
        bijector.moving_variance.assign(variance.astype(dtype))
    # One per-channel affine map with scales within e^+-1 or 100: a few ulps.
    return Case(bijector, shape, tolerance=1e-5)


def _multiscale_spec(dtype: str, extreme: bool) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(dict(
        dtype=st.just(dtype), extreme=st.just(extreme), seed=st.integers(0, 2**16),
        event_shape=st.tuples(st.just(4), st.just(4), st.integers(1, 2)), num_scales=st.integers(1, 2),
        normalization=st.sampled_from(["none", "batch", "actnorm"]), transform=st.sampled_from(TRANSFORMS),
        mixing=st.sampled_from(MIXINGS),
        # Bounded only: convolutions of random weights drive unbounded log-scales to e^20 and more,
        # past what even float64 can invert to 1e-9 (the default bound is tanh).
        log_scale_bound=st.sampled_from(BOUNDED)))


def _multiscale(spec: dict) -> Case:
    """The paper's image architecture, one coupling of each kind per scale, as a distribution."""
    dist = real_nvp_multiscale(
        spec["event_shape"], num_scales=spec["num_scales"], normalization=spec["normalization"],
        num_checkerboard_couplings=1, num_channel_couplings=1, num_final_couplings=1, num_filters=4, num_blocks=1,
        log_scale_bound=spec["log_scale_bound"], seed=spec["seed"], dtype=spec["dtype"], transform=spec["transform"],
        num_bins=3, mixing=spec["mixing"])
    # Splines get smaller random weights: at 0.3, convolutions drive raw parameters to ~10, where a
    # slope inside a bin nears its floor and a float32 inverse is off by ~1e-2 (SPLINE_CHOICE.md),
    # which the next coupling's conditioner amplifies (0.2: 5e-3 over 12 draws; 0.1: 2e-6).
    _randomize(dist.trainable_variables, spec["seed"], scale=0.3 if spec["transform"] == "affine" else 0.1)
    if spec["extreme"]:
        _make_extreme([b for b in parts(dist.bijector) if isinstance(b, Coupling)], spec["seed"])
    # float32 through up to five couplings and normalizations of convolutions: ~1e-5 each.
    return Case(dist.bijector, spec["event_shape"], tolerance=1e-4,
                distribution=dist)


FAMILIES: dict[str, Family] = {
    "affine_coupling": Family(_affine_coupling_spec, _affine_coupling),
    "real_nvp": Family(_real_nvp_spec, _real_nvp),
    "preprocessing": Family(_preprocessing_spec, _preprocessing),
    "squeeze": Family(_squeeze_spec, _squeeze),
    "normalization": Family(_normalization_spec, _normalization),
    "real_nvp_multiscale": Family(_multiscale_spec, _multiscale),
    "spline_coupling": Family(_spline_coupling_spec, _spline_coupling),
    "lu_mixing": Family(_lu_mixing_spec, _lu_mixing),
}

# Examples per property and family (all families run each property): 8 families now share the
# suite's 6-minute budget that 6 shared before, so each draws a few fewer (the float64 autodiff
# Jacobians cost most); derandomized, the same examples every run.
EXAMPLES = {"round_trip": 10, "log_det_negation": 6, "log_det_autodiff": 5, "shapes": 6, "finite": 8}
PROPERTIES = len(EXAMPLES)


def _tol(case: Case, dtype: str) -> dict[str, float]:
    # float64 through the same maps: eps64 ~ 2e-16 grown as float32's is, ~1e-12; 1e-9 leaves room.
    tol = case.tolerance if dtype == "float32" else 1e-9
    return dict(rtol=tol, atol=tol)


def _drawn(data: st.DataObject, family: str, dtype: str | None = None) -> tuple[str, Case, tuple[int, ...], tf.Tensor]:
    """`(dtype, case, batch_shape, z)`: a bijector of `family` and latent points `z ~ N(0, 1)`."""
    dtype = dtype or data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    case = FAMILIES[family].draw(data, dtype)
    batch_shape = data.draw(st.sampled_from(BATCH_SHAPES), label="batch_shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    return dtype, case, batch_shape, tf.constant(rng.standard_normal(batch_shape + case.event_shape), dtype)


def _events(case: Case) -> int:
    return len(case.event_shape)


def _property(name: str):
    """A property test: run for each family, on `EXAMPLES[name]` drawn examples each."""

    def decorate(test):
        drawn = settings(max_examples=EXAMPLES[name])(given(data=st.data())(test))
        return pytest.mark.parametrize("family", sorted(FAMILIES))(drawn)

    return decorate


@_property("round_trip")
def test_round_trip_both_ways(family, data):
    dtype, case, _, z = _drawn(data, family)
    # tf.identity defeats TFP's cache, which would hand back the input itself.
    x = case.bijector.forward(tf.identity(z))
    np.testing.assert_allclose(case.bijector.inverse(tf.identity(x)), z, **_tol(case, dtype))
    x_again = case.bijector.forward(tf.identity(case.bijector.inverse(tf.identity(x))))
    np.testing.assert_allclose(x_again, x, **_tol(case, dtype))


@_property("log_det_negation")
def test_forward_log_det_is_minus_the_inverse_one(family, data):
    dtype, case, _, z = _drawn(data, family)
    x = case.bijector.forward(tf.identity(z))
    fldj = case.bijector.forward_log_det_jacobian(tf.identity(z), event_ndims=_events(case))
    ildj = case.bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=_events(case))
    np.testing.assert_allclose(np.broadcast_to(fldj, ildj.shape), -ildj, **_tol(case, dtype))


@_property("log_det_autodiff")
def test_log_det_matches_autodiff_in_float64(family, data):
    _, case, batch_shape, z = _drawn(data, family, "float64")
    n, size = math.prod(batch_shape), math.prod(case.event_shape)

    def log_det(function, inputs):
        flat = tf.reshape(inputs, [n, size])
        with tf.GradientTape() as tape:
            tape.watch(flat)
            outputs = tf.reshape(function(tf.reshape(flat, inputs.shape)), [n, size])
        return tf.reshape(tf.linalg.slogdet(tape.batch_jacobian(outputs, flat))[1], batch_shape)

    x = tf.identity(case.bijector.forward(tf.identity(z)))
    # LU of a well-conditioned Jacobian of at most 12 x 12 entries in float64: ~1e-13 relative.
    fldj = case.bijector.forward_log_det_jacobian(tf.identity(z), event_ndims=_events(case))
    np.testing.assert_allclose(np.broadcast_to(fldj, batch_shape), log_det(case.bijector.forward, z),
                               rtol=1e-9, atol=1e-9)
    ildj = case.bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=_events(case))
    np.testing.assert_allclose(np.broadcast_to(ildj, batch_shape), log_det(case.bijector.inverse, x),
                               rtol=1e-9, atol=1e-9)


@_property("shapes")
def test_shapes_and_dtypes_follow_the_input(family, data):
    dtype, case, batch_shape, z = _drawn(data, family)
    x = case.bijector.forward(tf.identity(z))
    assert x.shape == batch_shape + case.data_event and x.dtype == z.dtype
    assert case.bijector.inverse(tf.identity(x)).shape == z.shape
    fldj = case.bijector.forward_log_det_jacobian(tf.identity(z), event_ndims=_events(case))
    # A constant log-det (standardisation, tfb.Identity) is a scalar: TFP's contract is "broadcasts to".
    assert np.broadcast_shapes(fldj.shape, batch_shape) == batch_shape and fldj.dtype == z.dtype
    if case.distribution is not None:
        assert case.distribution.log_prob(tf.identity(x)).shape == batch_shape
    # Each batch member is transformed on its own: the first alone as in the batch.
    if batch_shape:
        first = tf.reshape(z, (-1, *case.event_shape))[:1]
        alone = case.bijector.forward(tf.identity(first))
        np.testing.assert_allclose(alone, tf.reshape(x, (-1, *case.data_event))[:1], **_tol(case, dtype))


@_property("finite")
def test_finite_for_large_inputs_and_extreme_parameters(family, data):
    dtype = data.draw(st.sampled_from(["float32", "float64"]), label="dtype")
    case = FAMILIES[family].draw(data, dtype, extreme=True)
    batch = data.draw(st.integers(1, 4), label="rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    low, high = case.data_range
    # The edges themselves: the largest value below `high` (its own dtype's), `low`, and 0 when inside.
    edges = [np.nextafter(np.array(high, dtype), np.array(low, dtype)), np.array(low, dtype)]
    x = rng.uniform(low, high, (batch + len(edges), *case.data_event)).astype(dtype)
    for k, edge in enumerate(edges):
        x[batch + k] = edge
    z = rng.uniform(-MAGNITUDE, MAGNITUDE, (batch, *case.event_shape)).astype(dtype)
    z[0] = MAGNITUDE
    n = _events(case)
    results = {
        "inverse": case.bijector.inverse(tf.constant(x)),
        "inverse_log_det_jacobian": case.bijector.inverse_log_det_jacobian(tf.constant(x), event_ndims=n),
        "forward": case.bijector.forward(tf.constant(z)),
        "forward_log_det_jacobian": case.bijector.forward_log_det_jacobian(tf.constant(z), event_ndims=n),
    }
    if case.distribution is not None:
        results["log_prob"] = case.distribution.log_prob(tf.constant(x))
    for name, value in results.items():
        assert np.all(np.isfinite(value.numpy())), f"{name} is not finite: {value.numpy()}"


def test_the_extreme_parameters_are_extreme():
    # The finiteness property proves something only if its log-scales do reach the bound.
    coupling = AffineCoupling(MLPConditioner((8,), output_shape=(2,), seed=0), num_masked=2, event_shape=(4,))
    _randomize(coupling.trainable_variables, 0)
    _make_extreme([coupling], 0)
    x = tf.constant(np.random.default_rng(0).uniform(-MAGNITUDE, MAGNITUDE, (64, 4)), tf.float32)
    fldj = coupling.forward_log_det_jacobian(x, event_ndims=1).numpy()
    # Two transformed entries, each s = +-MAX_LOG_SCALE once tanh has saturated.
    assert np.max(np.abs(fldj)) == pytest.approx(2 * MAX_LOG_SCALE)
