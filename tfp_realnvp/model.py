"""FlowModel: a flow density as a Keras 3 model, trained with `model.fit`.

With `g` the flow's bijector (base to data, TFP's generative direction, preprocessing
included), `p_z` its base distribution and `f = g^{-1}`:

```none
log p(x) = log p_z(f(x)) + log|det df/dx|          (log_prob, call; the loss is its negative mean)
x = g(T * z),  z ~ p_z                             (sample, at temperature T)
```

A conditional model evaluates both at a context `c`: `f(x; c)`, `g(z; c)`, every coupling's
conditioner seeing `c`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks
from tfp_realnvp.bijectors.preprocessing import Preprocessing
from tfp_realnvp.callbacks import with_progress_bar
from tfp_realnvp.compiled import Bucketed
from tfp_realnvp.flows.registry import flow_builder
from tfp_realnvp.routing import condition_keys, route
from tfp_realnvp.tracking import keras_layers, untracked_layers, untracked_variables

__all__ = [
    "FlowModel",
]

tfb = tfp.bijectors
tfd = tfp.distributions


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def _is_multi_worker() -> bool:
    strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


# Training defaults of `FlowModel.compile`, the fastest that benchmarks/speed.py measured: see
# RESULTS.md's rows against Keras's own CPU defaults (no XLA, one step per call) and XLA. On
# these cores (TensorFlow's oneDNN kernels on) the training step of a small flow runs faster in
# TensorFlow's graph than under XLA (S, 136k weights: 1.31x in the run of 2026-12-06, 1.32x in
# that of 2026-12-02) and is ready sooner (3.0 s against 5.3 s at S); the main job trained in 38 s
# instead of 69. A wide flow's step is matmuls and their elementwise glue, which XLA fuses: at L
# (726k weights) XLA was 1.20x faster on 2026-12-06, 1.03x on 2026-12-02 and up to 1.27x in earlier
# runs. So "auto" compiles the step with XLA from XLA_FROM_WEIGHTS weights (`count_params`; the
# recipes' flows, 136k-232k, stay in the graph). The eager calls stay XLA-compiled.
DEFAULT_JIT_COMPILE = False
XLA_FROM_WEIGHTS = 400_000
DEFAULT_STEPS_PER_EXECUTION = 16


def _stateless_seed(seed: int | Sequence[int] | tf.Tensor) -> tf.Tensor:
    """The int32 pair TFP samples from: same seed, same draws, every call.

    An int seed `s` becomes `[s mod 2**31, s // 2**31]`, which is `[s, 0]` for `0 <= s < 2**31`
    (the int64 seeds of an export's `sample` signature included); a pair is cast to int32.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.cast(seed, tf.int64)
        seed = tf.stack([tf.bitwise.bitwise_and(seed, 2**31 - 1), tf.bitwise.right_shift(seed, 31)])
    return tf.cast(seed, tf.int32)


def _split_inputs(inputs: Any) -> tuple[Any, Any]:
    """`(x, context)` of a model input: an array or tensor `x`, or a dict `{"x": x, "context": c}`."""
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - {"x", "context"})
        if unknown or "x" not in inputs:
            raise ValueError(f"a conditional model's inputs are {{'x': ..., 'context': ...}}; got keys {sorted(inputs)}")
        return inputs["x"], inputs.get("context")
    return inputs, None


def _numbers(x: Any, what: str) -> Any:
    """`x` (a numpy array for anything but a tensor), or a TypeError if it does not hold numbers."""
    dtype = x.dtype if isinstance(x, (tf.Tensor, tf.Variable)) else None
    if dtype is not None:
        ok = dtype.is_floating or dtype.is_integer or dtype.is_bool
    else:
        x = np.asarray(x)
        dtype, ok = x.dtype, x.dtype.kind in "biuf"
    if not ok:
        raise TypeError(f"{what} takes numbers; got dtype {dtype.name if isinstance(dtype, tf.DType) else dtype}")
    return x


class _Compiled:
    """A model's eager `log_prob` and sampling flow, compiled with XLA per shape class."""

    def __init__(self, model: FlowModel) -> None:
        distribution = model.distribution

        # The context comes checked and broadcast to the batch (FlowModel._check_context).
        def log_prob(x: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
            return distribution.log_prob(x, bijector_kwargs=route(distribution.bijector, training=False,
                                                                  context=context))

        def forward(z: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
            return distribution.bijector.forward(z, **route(distribution.bijector, training=False, context=context))

        self.log_prob = Bucketed(log_prob)
        self.forward = Bucketed(forward)
        # The latent draw in TensorFlow's graph, without XLA: XLA would draw other numbers for a
        # seed, and eagerly TFP's sampling costs milliseconds of Python per call (at S, a third of
        # sample(4096)). One trace: the count, seed and temperature are tensors.
        def draw(n: tf.Tensor, seed: tf.Tensor, temperature: tf.Tensor) -> Any:
            z = distribution.distribution.sample(n, seed=seed)
            return tf.nest.map_structure(lambda part: part * tf.cast(temperature, part.dtype), z)

        self.draw = tf.function(draw, autograph=False, input_signature=[
            tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float64)])


def _batched(x: tf.Tensor, event_shape: tuple[int, ...]) -> bool:
    """Whether `x` is an eager, non-empty batch `[n, *event_shape]`, which the compiled calls take."""
    return (tf.executing_eagerly() and not isinstance(x, tf.Variable) and x.shape.rank == len(event_shape) + 1
            and bool(x.shape[0]))


def _batch_size(x: tf.Tensor) -> int | tf.Tensor:
    """The size of `x`'s first axis: an int when static, else a scalar tensor."""
    return x.shape[0] if x.shape.rank and x.shape[0] is not None else tf.shape(x)[0]


def _progress(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`fit`/`evaluate`/`predict` keyword arguments with the truthful progress bar among the callbacks."""
    return {**kwargs, "callbacks": with_progress_bar(kwargs.get("callbacks"))}


def _event_shape(event_size: Any, event_shape: Any) -> tuple[int, ...]:
    if (event_size is None) == (event_shape is None):
        raise ValueError(
            "give exactly one of event_size (an int, for vectors) and event_shape (e.g. [8, 8, 1]); "
            f"got event_size={event_size!r}, event_shape={event_shape!r}"
        )
    if event_shape is None:
        return (checks.integer("event_size", event_size, low=1),)
    return checks.event_shape(event_shape)


def _json_options(flow: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as a JSON round trip gives them back (tuples become lists), so the model's config
    in memory is the one it saves."""
    try:
        return json.loads(json.dumps(options))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"the options of flow {flow!r} must be JSON values (numbers, strings, booleans, None, lists, dicts) "
            f"so the model can save and rebuild them; {error}"
        ) from None


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class FlowModel(keras.Model):
    """A flow density over events of any shape, as a Keras 3 model.

    `model(x)` and `model.log_prob(x)` return `log p(x)` per example, exact in the data's own
    units (the preprocessing's log-determinants included). `compile` needs no loss: training
    minimises the mean negative log-likelihood, so `fit(x)` takes data without labels. The
    flow comes from a registered builder (`"real_nvp"` by default; see
    `tfp_realnvp.register_flow`) and sits behind a `Preprocessing` bijector;
    `model.distribution` is the whole thing as a `tfd.TransformedDistribution`.

    Every Keras layer of the flow is tracked (`tfp_realnvp.tracking`): the model refuses a flow
    holding a layer, or a `tf.Variable`, that it could not train and save.

    Metrics: `loss` and `nll` (mean NLL in nats per example), and for integer data
    `bits_per_dim`, `nll / (event_size * ln 2)` of the dequantized data. Integer data are
    dequantized with fresh uniform noise at every training step, and with one fixed draw (from
    `seed`; the noise of a row depends on its place in its batch) at every evaluation: the
    validation NLL that early stopping compares between epochs and the one `evaluate` reports
    afterwards are the same function of the weights, so the best epoch's figure is the figure.

    Args:
      event_size: Number of features of vector data; the same as `event_shape=[event_size]`.
        Give this or `event_shape`.
      event_shape: The shape of one example, e.g. `[8, 8, 1]`. Defaults to `None`.
      flow: The registered name of the flow's builder. Defaults to `"real_nvp"`.
      seed: Seed of the flow's random choices and initial weights, and of the
        dequantization noise. Defaults to 0.
      standardize: Fit a mean and standard deviation per event entry on the training data
        (automatically at the first `fit`, or with `adapt`). Defaults to `True`.
      integer_levels: Number of levels of integer data (e.g. 17 for 8x8 digits); turns on
        dequantization and `bits_per_dim`. Defaults to `None`.
      logit_alpha: Apply Real NVP's `logit(alpha + (1 - alpha) x)` to data in `[0, 1)`.
        Defaults to `None`.
      flow_dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      whiten: Instead of the per-entry standardisation, fit the training rows' mean and full
        covariance (`tfp_realnvp.bijectors.whitening`): a fresh model is then their
        maximum-likelihood Gaussian. Vector events only. Defaults to `False`.
      context_size: For a conditional density `p(x | context)`: the number of context
        features per example, passed to the builder as `context_size` (its bijectors must take
        a `context` keyword; `real_nvp`'s do). Then `fit({"x": x, "context": c})`,
        `log_prob(x, context=c)` and `sample(n, context=c)`. Defaults to 0 (unconditional).
      name: The model's name. Defaults to `None` (Keras's).
      trainable: Passed to `keras.Model`. Defaults to `True`.
      dtype: Passed to `keras.Model`. Defaults to `None`.
      **flow_options: The builder's own options, JSON values; for `"real_nvp"`:
        `num_couplings` (8), `hidden_units` ((128, 128)), `permutation` ("reverse"),
        `log_scale_bound` ("tanh"), `activation` ("relu"); for `"real_nvp_multiscale"`
        (events `[H, W, C]`), see `tfp_realnvp.real_nvp_multiscale`. A random choice
        (`permutation="random"`) is drawn once and kept in the config, so a saved model
        rebuilds the same flow.

    Raises:
      ValueError: For a bad event shape, an unregistered flow, or a flow whose events do not
        have `event_shape`.
      TypeError: For options that are not JSON values, or a flow that is not a
        `TransformedDistribution` or holds weights the model cannot track.

    Example:

    ```python
    model = FlowModel(2, num_couplings=4, hidden_units=(64, 64))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, epochs=10, batch_size=256, validation_split=0.1)
    model.log_prob(x_test)
    ```
    """

    def __init__(
        self,
        event_size: int | None = None,
        *,
        event_shape: Sequence[int] | None = None,
        flow: str = "real_nvp",
        seed: int = 0,
        standardize: bool = True,
        integer_levels: int | None = None,
        logit_alpha: float | None = None,
        flow_dtype: str = "float32",
        context_size: int = 0,
        whiten: bool = False,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        **flow_options: Any,
    ) -> None:
        super().__init__(**{k: v for k, v in dict(name=name, trainable=trainable, dtype=dtype).items()
                            if v is not None})
        shape = _event_shape(event_size, event_shape)
        flow_dtype = checks.dtype(flow_dtype, name="flow_dtype")
        context_size = checks.context_size(context_size)
        builder = flow_builder(flow)
        options = _json_options(flow, builder.resolve(shape, int(seed), flow_options))
        context_option = {"context_size": context_size} if context_size else {}
        built = builder.build(shape, seed=int(seed), dtype=flow_dtype, **context_option, **options)
        # TFP hands out a private subclass of TransformedDistribution's base, so test the shape of it.
        if not (isinstance(built, tfd.Distribution) and isinstance(getattr(built, "bijector", None), tfb.Bijector)
                and isinstance(getattr(built, "distribution", None), tfd.Distribution)):
            raise TypeError(
                f"flow {flow!r} built a {type(built).__name__}; expected a tfd.TransformedDistribution "
                "(a base distribution and the bijector from it to data space)"
            )
        if tuple(built.event_shape) != shape:
            raise ValueError(
                f"flow {flow!r} built a distribution over events of shape {tuple(built.event_shape)}; "
                f"expected {shape}, the model's event_shape"
            )
        self._event = shape
        self._flow_config = dict(
            event_shape=list(shape),
            flow=flow,
            seed=int(seed),
            standardize=bool(standardize),
            integer_levels=None if integer_levels is None else int(integer_levels),
            logit_alpha=None if logit_alpha is None else float(logit_alpha),
            flow_dtype=flow_dtype,
            context_size=context_size,
            **({"whiten": True} if whiten else {}),  # left out when off: configs saved before it load as they were
            **options,
        )
        self.preprocessing = Preprocessing(
            shape,
            standardize=standardize,
            integer_levels=integer_levels,
            logit_alpha=logit_alpha,
            whiten=whiten,
            dtype=flow_dtype,
            name="preprocessing",
        )
        self._distribution = tfd.TransformedDistribution(
            distribution=built.distribution,
            bijector=tfb.Chain([self.preprocessing.bijector(), built.bijector], name="flow"),
            name="flow_model",
        )
        if context_size and "context" not in condition_keys(self._distribution):
            raise ValueError(
                f"flow {flow!r} takes no context: none of its bijectors lists 'context' in condition_keys "
                f"(see tfp_realnvp.routing); expected a builder whose couplings are conditioned on context_size="
                f"{context_size} features, as real_nvp's are"
            )
        self._compiled = None  # the pass below builds layers: plain eager calls
        self._eager_xla = True  # compile(jit_compile=False) turns the compiled eager calls off too
        # Layers built at their first call (a conditioner given no input shape, a tanh bound
        # taking a plain callable's dtype) exist after one pass.
        self.log_prob(tf.zeros((1, *shape), flow_dtype),
                      context=tf.zeros((1, context_size), flow_dtype) if context_size else None)
        # A keras.Model cannot see layers held inside TFP bijectors: list them here so
        # trainable_variables, fit, save and load all reach every weight of the flow.
        untracked = untracked_layers(self._distribution)
        if untracked:
            where = ", ".join(f"{owner}.{attribute} ({layer.name})" for owner, attribute, layer in untracked)
            raise TypeError(
                f"flow {flow!r} holds Keras layers that its bijectors do not list in keras_layers: {where}; "
                "their weights would be neither trained nor saved (see tfp_realnvp.tracking)"
            )
        self.flow_layers = keras_layers(self._distribution)
        stray = untracked_variables(self._distribution, self.weights)
        if stray:
            raise TypeError(
                f"flow {flow!r} holds tf.Variables outside any Keras layer: {', '.join(v.name for v in stray)}; "
                "a Keras model neither trains nor saves them: create them in a Keras layer that the bijector "
                "lists in keras_layers (see tfp_realnvp.tracking)"
            )
        self._noise = keras.random.SeedGenerator(seed, name="dequantization_noise")
        self._evaluation_noise_seed = int(seed)  # one fixed draw for every evaluation (see the class docstring)
        self._compiled = _Compiled(self)
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.bits_tracker = keras.metrics.Mean(name="bits_per_dim") if integer_levels else None
        self.built = True

    # -- the density --------------------------------------------------------------------

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return self._event

    @property
    def event_size(self) -> int:
        """The number of entries of one example, `prod(event_shape)`."""
        return math.prod(self._event)

    @property
    def flow(self) -> str:
        """The registered name of the flow's builder."""
        return self._flow_config["flow"]

    @property
    def distribution(self) -> tfd.Distribution:
        """The density over data space, a `tfd.TransformedDistribution` over the flow's base."""
        return self._distribution

    @property
    def flow_dtype(self) -> tf.DType:
        return tf.as_dtype(self._flow_config["flow_dtype"])

    @property
    def context_size(self) -> int:
        """The number of context features of a conditional model; 0 for an unconditional one."""
        return self._flow_config["context_size"]

    def call(self, inputs: tf.Tensor | dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """`log p(x)`, or `log p(x | context)` for inputs `{"x": x, "context": c}`."""
        x, context = _split_inputs(inputs)
        return self.log_prob(x, context=context, training=bool(training))

    def _compiles(self) -> bool:
        """Whether eager calls run compiled: not under `compile(jit_compile=False)` or
        `run_eagerly=True`, nor with several replicas (XLA cannot reach their variables)."""
        return (self._compiled is not None and self._eager_xla and not getattr(self, "run_eagerly", False)
                and _num_replicas() == 1)

    def _check_context(self, context: Any, batch_size: Any) -> tf.Tensor | None:
        """The context as `[batch_size, context_size]` (one row shared by all), or None.

        Raises:
          ValueError: If a conditional model gets no context, an unconditional one gets one, or the
            context's width or (when known) row count does not fit.
        """
        size = self.context_size
        if not size:
            if context is not None:
                raise ValueError(f"this model takes no context (context_size=0); got a context of shape "
                                 f"{tuple(np.shape(context))}")
            return None
        if context is None:
            raise ValueError(f"this model is conditional (context_size={size}): pass context= of shape [n, {size}] "
                             f"(in fit: {{'x': x, 'context': context}})")
        context = tf.cast(context, self.flow_dtype)
        if context.shape.rank != 2 or context.shape[-1] not in (None, size):
            raise ValueError(f"context of shape {tuple(context.shape)} does not fit the model's context_size {size}; "
                             f"expected [n, {size}]")
        rows, batch = context.shape[0], tf.get_static_value(batch_size)
        if rows is not None and batch is not None and rows not in (1, int(batch)):
            raise ValueError(f"context has {rows} rows but the batch has {int(batch)}; expected {int(batch)} rows, or "
                             "1 row to share")
        return tf.broadcast_to(context, tf.stack([tf.cast(batch_size, tf.int32), size]))

    def bijector_kwargs(
        self, batch_size: int | tf.Tensor, *, context: Any = None, training: bool = False
    ) -> dict[str, Any]:
        """Keyword arguments for `distribution.bijector`'s methods that reach every part taking them.

        The context is checked (see `log_prob`) and broadcast to `[batch_size, context_size]`;
        `training` goes to the bijectors that take it. See `tfp_realnvp.routing`.
        """
        context = self._check_context(context, batch_size)
        return route(self._distribution.bijector, training=training, context=context)

    def check_event_shape(self, x: tf.Tensor | np.ndarray) -> None:
        """Raises ValueError unless `x`'s trailing axes are the model's event shape."""
        shape, rank = tuple(x.shape), len(self._event)
        trailing = shape[len(shape) - rank:] if len(shape) >= rank else None
        if trailing is None or any(got is not None and got != want for got, want in zip(trailing, self._event)):
            if rank == 1 and trailing is not None:
                raise ValueError(f"event size {trailing[0]} does not match the model's {self._event[0]}")
            raise ValueError(
                f"input of shape {shape} does not end in the model's event shape {self._event}; expected "
                f"[batch..., {', '.join(map(str, self._event))}]"
            )

    def log_prob(
        self, x: tf.Tensor | np.ndarray, *, context: tf.Tensor | np.ndarray | None = None, training: bool = False
    ) -> tf.Tensor:
        """`log p(x)` (or `log p(x | context)`) per example, in nats, in the data's own units.

        Args:
          x: Examples `[..., *event_shape]`; for a conditional model `[n, *event_shape]`.
          context: A conditional model's context, `[n, context_size]`, or `[1, context_size]`
            for one shared by every example. Defaults to `None` (an unconditional model).
          training: Passed to the bijectors that take it (batch normalization: batch statistics
            and an update of the running ones when True). Defaults to `False`.

        Raises:
          ValueError: For examples of another event shape, or a context that does not fit (see
            `context_size`).
          TypeError: For examples that are not numbers (strings, objects).
        """
        x = tf.cast(_numbers(x, "log_prob"), self.flow_dtype)
        self.check_event_shape(x)
        if self.context_size and x.shape.rank != len(self._event) + 1:
            raise ValueError(f"a conditional model's examples are a batch [n, {', '.join(map(str, self._event))}] "
                             f"beside a context [n, {self.context_size}]; got examples of shape {tuple(x.shape)}")
        if self._compiles() and not training and _batched(x, self._event):
            # Called eagerly, as users call it: one XLA program per shape class (compiled.py).
            return self._compiled.log_prob(x, self._check_context(context, x.shape[0]))
        kwargs = self.bijector_kwargs(_batch_size(x), context=context, training=training)
        return self._distribution.log_prob(x, bijector_kwargs=kwargs)

    def sample(
        self,
        num_samples: int | tf.Tensor,
        *,
        seed: int | Sequence[int] | tf.Tensor,
        temperature: float = 1.0,
        context: tf.Tensor | np.ndarray | None = None,
    ) -> tf.Tensor:
        """Draws `[num_samples, *event_shape]` samples; the same seed gives the same samples.

        The latent `z` is drawn from the flow's base distribution (any structure: a
        factored-out multi-scale base too), scaled by `temperature`, and mapped to data space
        by the bijector's `forward`.

        Args:
          num_samples: How many samples.
          seed: An int, or a stateless seed of shape `[2]`.
          temperature: Factor on the latent draw: for a standard normal base its standard
            deviation (values below 1 give more typical samples). Defaults to 1.
          context: A conditional model's context: `[num_samples, context_size]`, one row per
            sample, or `[1, context_size]` for all. Defaults to `None`.
        """
        if seed is None:
            raise ValueError("sample needs a seed: an int or a stateless pair [2] (the same seed gives the same "
                             "samples); got None")
        if checks.is_integer(num_samples):  # a tensor is checked where it is drawn
            checks.integer("num_samples", num_samples, low=0)
        if isinstance(temperature, (int, float)):
            checks.number("temperature", temperature, low=0)
        if self._compiles() and tf.executing_eagerly() and checks.is_integer(num_samples) and num_samples:
            z = self._compiled.draw(tf.constant(num_samples, tf.int32), _stateless_seed(seed),
                                    tf.cast(temperature, tf.float64))
        else:
            z = self._distribution.distribution.sample(num_samples, seed=_stateless_seed(seed))
            z = tf.nest.map_structure(lambda part: part * tf.cast(temperature, part.dtype), z)
        if self._compiles() and isinstance(z, tf.Tensor) and _batched(z, self._event):
            # The draw stays TensorFlow's own (XLA draws other numbers for a seed); the flow is compiled.
            return self._compiled.forward(z, self._check_context(context, z.shape[0]))
        return self._distribution.bijector.forward(z, **self.bijector_kwargs(num_samples, context=context))

    def to_levels(self, x: tf.Tensor | np.ndarray) -> np.ndarray:
        """The integer data that dequantized values `x` (a `sample`) stand for, as int32.

        Training models `k + u` for integer `k` and `u ~ U[0, 1)`, so `floor` gives back the
        level, and `P(k)` is the flow's mass on `[k, k + 1)`. The logit's `alpha` leaves the
        flow a little mass outside `[0, levels)` (draws down to `-levels alpha / (1 - alpha)`,
        -0.89 for digits): those become the nearest level, so every value is in
        `[0, levels - 1]`.

        Args:
          x: Values in the data space of a model with `integer_levels`.

        Returns:
          `clip(floor(x), 0, integer_levels - 1)` as an int32 array.

        Raises:
          ValueError: If the model was not made for integer data.
        """
        levels = self._flow_config["integer_levels"]
        if levels is None:
            raise ValueError("to_levels needs a model of integer data (integer_levels); this one models real values")
        return np.clip(np.floor(np.asarray(x, np.float64)), 0, levels - 1).astype(np.int32)

    def adapt(self, x: np.ndarray | tf.data.Dataset, **kwargs: Any) -> None:
        """Fits the preprocessing's statistics (standardisation) on training data."""
        self.preprocessing.adapt(x, **kwargs)

    # -- training -----------------------------------------------------------------------

    def compile(
        self,
        optimizer: Any = "adam",
        *,
        loss: Any = None,
        jit_compile: bool | str = "auto",
        steps_per_execution: int | None = None,
        evaluation_jit_compile: bool = False,
        **kwargs: Any,
    ) -> None:
        """Configures training; the loss is always the mean negative log-likelihood.

        The defaults are the fastest measured (benchmarks/RESULTS.md): the training step in
        TensorFlow's graph, 16 steps per call; `evaluate` (and the validation in `fit`) and
        `predict` in the graph too; the eager `log_prob`, `model(x)` and `sample` compiled with
        XLA (see `compiled`).

        Args:
          optimizer: Any Keras optimizer. Defaults to `"adam"`.
          loss: Must be left `None`: a density model's loss is its NLL.
          jit_compile: Whether to compile the training step with XLA. `"auto"` (the default)
            means no for flows of fewer than `XLA_FROM_WEIGHTS` (400 000) weights
            (TensorFlow's graph: measured faster here for them, and ready sooner) and yes for
            wider ones (3-27% faster at L, 726k weights, here), with the eager
            `log_prob`/`sample` calls compiled with XLA either way; `True` compiles the training
            step with XLA for any flow (faster on CPUs without oneDNN's kernels);
            `False` also turns the compiled eager calls off. Under a distribution strategy with
            several replicas XLA is off (it cannot reach variables on other devices).
          steps_per_execution: Training steps run per call of the compiled function. `None`
            (the default) means 16, or 1 under a distribution strategy with several replicas
            or workers (Keras 3's multi-step loop fails on distributed iterators there).
            Batch-level callback hooks (`on_train_batch_end`, the progress bar) run once per
            call; epoch-level ones (EarlyStopping, ModelCheckpoint, TensorBoard's default) are
            unaffected. Pass 1 for a hook after every batch.
          evaluation_jit_compile: Whether `evaluate` and `predict` compile their step with XLA
            too. XLA compiles a step anew for every batch shape (the last, partial batch of each
            split is one), seconds each, while a forward pass over a validation split takes
            milliseconds; so defaults to `False`. (The eager `log_prob`, which users call on
            batches of any size, is compiled per power-of-two shape class: see `compiled`.)
          **kwargs: Passed to `keras.Model.compile` (`metrics`, `run_eagerly`, ...).

        Raises:
          ValueError: If a `loss` is given, or `steps_per_execution` is not a positive int.
        """
        if loss is not None:
            raise ValueError(
                f"FlowModel trains on its negative log-likelihood and takes no loss; got loss={loss!r}"
            )
        distributed = _num_replicas() > 1 or _is_multi_worker()
        if steps_per_execution is None:
            steps_per_execution = 1 if distributed else DEFAULT_STEPS_PER_EXECUTION
        steps_per_execution = checks.integer("steps_per_execution", steps_per_execution, low=1)
        requested = jit_compile
        self._eager_xla = requested is not False  # "auto" or True; only an explicit False turns them off
        if distributed:
            jit_compile = False
        elif jit_compile == "auto":
            jit_compile = DEFAULT_JIT_COMPILE or self.count_params() >= XLA_FROM_WEIGHTS
        self._evaluation_xla = bool(jit_compile) and bool(evaluation_jit_compile)
        super().compile(
            optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution, **kwargs
        )
        self._compile_config.config["jit_compile"] = requested  # saved as asked: "auto" reloads as "auto"
        # The optimizer's slots made now, not in the first training step: a tf.function that
        # creates variables is traced twice (TF then retraces without creating them), which cost
        # half the first step's seconds.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def make_test_function(self, force: bool = False) -> Any:
        return self._with_evaluation_xla(super().make_test_function, force)

    def make_predict_function(self, force: bool = False) -> Any:
        return self._with_evaluation_xla(super().make_predict_function, force)

    def _with_evaluation_xla(self, make: Any, force: bool) -> Any:
        """`make(force)` with `jit_compile` as `compile(evaluation_jit_compile=...)` chose."""
        training_xla = self.jit_compile
        self.jit_compile = getattr(self, "_evaluation_xla", training_xla) and training_xla
        try:
            return make(force)
        finally:
            self.jit_compile = training_xla

    def compile_from_config(self, config: dict[str, Any]) -> None:
        # keras.Model skips this for models that override compile(); ours keeps the
        # signature, so the saved optimizer (and its state) comes back with load_model.
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        """`keras.Model.fit`; fits the standardisation on the training part of `x` first if needed.

        Arrays are checked first, as `preprocessing.check` checks them (shape, finite values, the
        range of integer or logit data), and must hold at least one row: a `ValueError` (a
        `TypeError` for non-numbers) instead of NaN weights or an epoch of nothing.

        The progress bar is `tfp_realnvp.callbacks.ProgressBar` (it never counts past the
        epoch's steps when several steps run per call) unless `callbacks` holds a
        `ProgbarLogger`.
        """
        rows = None if x is None or isinstance(x, tf.data.Dataset) else _split_inputs(x)[0]
        if isinstance(rows, (np.ndarray, tf.Tensor, list)):
            # Arrays are checked whole before a step runs: a NaN would otherwise turn every weight
            # into NaN (without standardisation nothing else looks at the data), and no row at all
            # would train nothing without a word.
            x_np = _numbers(rows, "fit")
            if len(x_np) == 0:
                raise ValueError(f"fit got no rows (shape {x_np.shape}); expected at least one example")
            self.preprocessing.check(x_np)
            if self.preprocessing.needs_adapt:
                split = kwargs.get("validation_split") or 0.0
                self.adapt(x_np[: int(len(x_np) * (1.0 - split))] if split else x_np)
        elif self.preprocessing.needs_adapt and x is not None:
            self.adapt(x)  # a tf.data.Dataset of batches
        return super().fit(x, *args, **_progress(kwargs))

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.evaluate`, with `fit`'s progress bar."""
        return super().evaluate(x, *args, **_progress(kwargs))

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """`keras.Model.predict` (`log p(x)` per example), with `fit`'s progress bar."""
        return super().predict(x, *args, **_progress(kwargs))

    def _dequantize(self, inputs: Any, *, training: bool) -> Any:
        if isinstance(inputs, dict):
            return {**inputs, "x": self._dequantize(inputs["x"], training=training)}
        # Training draws afresh; evaluation draws the same noise every time (an int seed is
        # stateless in Keras), so two evaluations of the same weights give the same NLL.
        seed = self._noise if training else self._evaluation_noise_seed
        return self.preprocessing.dequantize(tf.cast(inputs, self.flow_dtype), seed)

    def _step(self, step: Any, data: Any, *, training: bool) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logs = step(keras.utils.pack_x_y_sample_weight(self._dequantize(x, training=training), y, sample_weight))
        if _is_multi_worker():
            # Keras 3's multi-worker fit reduces logs along axis 0 and fails on scalars
            # (keras-team/keras#20585); a [1]-shaped log reduces correctly.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._step(super().train_step, data, training=True)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._step(super().test_step, data, training=False)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: tf.Tensor | None = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        nll = -y_pred
        if sample_weight is not None:
            sample_weight = tf.cast(tf.reshape(sample_weight, [-1]), nll.dtype)
            loss = tf.reduce_sum(nll * sample_weight) / tf.reduce_sum(sample_weight)
        else:
            loss = tf.reduce_mean(nll)
        # Keras divides its own losses by the replica count so that summed gradients are
        # those of the global mean, and undoes it for the reported loss; do the same.
        return tf.cast(loss, "float32") / _num_replicas()

    def compute_metrics(self, x: Any, y: Any, y_pred: tf.Tensor, sample_weight: Any = None) -> dict:
        nll = -tf.cast(y_pred, "float32")
        self.nll_tracker.update_state(nll, sample_weight=sample_weight)
        if self.bits_tracker is not None:
            self.bits_tracker.update_state(nll / (self.event_size * math.log(2.0)), sample_weight=sample_weight)
        return self.get_metrics_result()

    # -- saving -------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments: the event shape, the flow's name and its resolved options."""
        return {**super().get_config(), **self._flow_config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FlowModel:
        # Configs saved before flows had names hold event_size and real_nvp's options.
        return cls(**config)
