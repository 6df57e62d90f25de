"""FlowModel: a Real NVP density as a Keras 3 model, trained with `model.fit`."""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.flows import keras_layers, real_nvp
from tfp_realnvp.preprocessing import Preprocessing

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
# RESULTS.md's rows against Keras's own CPU defaults (no XLA, one step per call).
DEFAULT_JIT_COMPILE = True
DEFAULT_STEPS_PER_EXECUTION = 16


def _stateless_seed(seed: int | Sequence[int] | tf.Tensor) -> tf.Tensor:
    """An int seed becomes the stateless seed `[seed, 0]`: same seed, same draws, every call."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return seed


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class FlowModel(keras.Model):
    """A Real NVP density over `[n, event_size]` data, as a Keras 3 model.

    `model(x)` and `model.log_prob(x)` return `log p(x)` per row, exact in the data's own
    units (the preprocessing's log-determinants included). `compile` needs no loss: training
    minimises the mean negative log-likelihood, so `fit(x)` takes data without labels. The
    flow is a `real_nvp(...)` chain behind a `Preprocessing` bijector; `model.distribution` is
    the whole thing as a `tfd.TransformedDistribution`.

    Metrics: `loss` and `nll` (mean NLL in nats per example), and for integer data
    `bits_per_dim`, `nll / (event_size * ln 2)` of the dequantized data (integer data are
    dequantized with fresh uniform noise at every training and evaluation step).

    Args:
      event_size: Number of features.
      num_couplings: Affine couplings in the flow. Defaults to 8.
      hidden_units: Hidden widths of each conditioner. Defaults to `(128, 128)`.
      permutation: `"reverse"` or `"random"`. Defaults to `"reverse"`.
      seed: Seed of the permutations, initial weights and dequantization noise. Defaults to 0.
      log_scale_bound: `"tanh"`, `"sigmoid"` or `"unbounded"`. Defaults to `"tanh"`.
      activation: Conditioner activation. Defaults to `"relu"`.
      standardize: Fit mean/std on the training data (automatically at the first `fit`, or
        with `adapt`). Defaults to `True`.
      integer_levels: Number of levels of integer data (e.g. 17 for 8x8 digits); turns on
        dequantization and `bits_per_dim`. Defaults to `None`.
      logit_alpha: Apply Real NVP's `logit(alpha + (1 - alpha) x)` to data in `[0, 1]`.
        Defaults to `None`.
      flow_dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      **kwargs: Passed to `keras.Model` (`name`).

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
        event_size: int,
        *,
        num_couplings: int = 8,
        hidden_units: Sequence[int] = (128, 128),
        permutation: str = "reverse",
        seed: int = 0,
        log_scale_bound: str = "tanh",
        activation: str = "relu",
        standardize: bool = True,
        integer_levels: int | None = None,
        logit_alpha: float | None = None,
        flow_dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._flow_config = dict(
            event_size=int(event_size),
            num_couplings=int(num_couplings),
            hidden_units=[int(u) for u in hidden_units],
            permutation=permutation,
            seed=int(seed),
            log_scale_bound=log_scale_bound,
            activation=activation,
            standardize=bool(standardize),
            integer_levels=None if integer_levels is None else int(integer_levels),
            logit_alpha=None if logit_alpha is None else float(logit_alpha),
            flow_dtype=flow_dtype,
        )
        flow = real_nvp(
            int(event_size),
            num_couplings=num_couplings,
            hidden_units=hidden_units,
            permutation=permutation,
            seed=seed,
            log_scale_bound=log_scale_bound,
            activation=activation,
            dtype=flow_dtype,
        )
        self.preprocessing = Preprocessing(
            int(event_size),
            standardize=standardize,
            integer_levels=integer_levels,
            logit_alpha=logit_alpha,
            dtype=flow_dtype,
            name="preprocessing",
        )
        # A keras.Model cannot see layers held inside TFP bijectors: list them here so
        # trainable_variables, fit, save and load all reach every conditioner weight.
        self.flow_layers = keras_layers(flow)
        self._distribution = tfd.TransformedDistribution(
            distribution=flow.distribution,
            bijector=tfb.Chain([self.preprocessing.bijector(), flow.bijector], name="flow"),
            name="flow_model",
        )
        self._noise = keras.random.SeedGenerator(seed, name="dequantization_noise")
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.bits_tracker = keras.metrics.Mean(name="bits_per_dim") if integer_levels else None
        self.built = True

    # -- the density --------------------------------------------------------------------

    @property
    def event_size(self) -> int:
        return self._flow_config["event_size"]

    @property
    def distribution(self) -> tfd.Distribution:
        """The density over data space, a `tfd.TransformedDistribution` over a standard normal."""
        return self._distribution

    @property
    def flow_dtype(self) -> tf.DType:
        return tf.as_dtype(self._flow_config["flow_dtype"])

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.log_prob(x)

    def log_prob(self, x: tf.Tensor | np.ndarray) -> tf.Tensor:
        """`log p(x)` per row, in nats, in the data's own units."""
        x = tf.cast(x, self.flow_dtype)
        if x.shape.rank is not None and x.shape[-1] is not None and x.shape[-1] != self.event_size:
            raise ValueError(
                f"event size {x.shape[-1]} does not match the model's {self.event_size}"
            )
        return self._distribution.log_prob(x)

    def sample(
        self, num_samples: int, *, seed: int | Sequence[int] | tf.Tensor, temperature: float = 1.0
    ) -> tf.Tensor:
        """Draws `[num_samples, event_size]` samples; the same seed gives the same samples.

        Args:
          num_samples: How many samples.
          seed: An int, or a stateless seed of shape `[2]`.
          temperature: Standard deviation of the latent normal (values below 1 give more
            typical samples). Defaults to 1.
        """
        z = tf.random.stateless_normal(
            [num_samples, self.event_size], seed=_stateless_seed(seed), dtype=self.flow_dtype
        )
        return self._distribution.bijector.forward(z * tf.cast(temperature, self.flow_dtype))

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
        **kwargs: Any,
    ) -> None:
        """Configures training; the loss is always the mean negative log-likelihood.

        The defaults are the fastest measured (benchmarks/RESULTS.md): the training step
        compiled with XLA, 16 steps per call.

        Args:
          optimizer: Any Keras optimizer. Defaults to `"adam"`.
          loss: Must be left `None`: a density model's loss is its NLL.
          jit_compile: Whether to compile the training and evaluation steps with XLA.
            `"auto"` (the default) means yes, also on CPU (where Keras's own `"auto"` means
            no), except under a distribution strategy with several replicas, where XLA is off
            (it cannot reach variables on other devices); `True` is also turned off there.
          steps_per_execution: Training steps run per call of the compiled function. `None`
            (the default) means 16, or 1 under a distribution strategy with several replicas
            or workers (Keras 3's multi-step loop fails on distributed iterators there).
            Batch-level callback hooks (`on_train_batch_end`, the progress bar) run once per
            call; epoch-level ones (EarlyStopping, ModelCheckpoint, TensorBoard's default) are
            unaffected. Pass 1 for a hook after every batch.
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
        if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int) or steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be a positive int; got {steps_per_execution!r}")
        if distributed:
            jit_compile = False
        elif jit_compile == "auto":
            jit_compile = DEFAULT_JIT_COMPILE
        super().compile(
            optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution, **kwargs
        )

    def compile_from_config(self, config: dict[str, Any]) -> None:
        # keras.Model skips this for models that override compile(); ours keeps the
        # signature, so the saved optimizer (and its state) comes back with load_model.
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        """`keras.Model.fit`; fits the standardisation on the training part of `x` first if needed."""
        if self.preprocessing.needs_adapt and x is not None:
            if isinstance(x, tf.data.Dataset):
                self.adapt(x)
            else:
                x_np = np.asarray(x)
                split = kwargs.get("validation_split") or 0.0
                self.adapt(x_np[: int(len(x_np) * (1.0 - split))] if split else x_np)
        return super().fit(x, *args, **kwargs)

    def _dequantize(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, self.flow_dtype)
        if self._flow_config["integer_levels"] is None:
            return x
        return x + keras.random.uniform(tf.shape(x), seed=self._noise, dtype=self.flow_dtype)

    def _step(self, step: Any, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logs = step(keras.utils.pack_x_y_sample_weight(self._dequantize(x), y, sample_weight))
        if _is_multi_worker():
            # Keras 3's multi-worker fit reduces logs along axis 0 and fails on scalars
            # (keras-team/keras#20585); a [1]-shaped log reduces correctly.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._step(super().train_step, data)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._step(super().test_step, data)

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

    def export_saved_model(
        self, base_dir: str | os.PathLike[str], *, version: int | None = None
    ) -> pathlib.Path:
        """Exports as `base_dir/<version>/` for TF Serving; see `tfp_realnvp.export_saved_model`."""
        from tfp_realnvp.export import export_saved_model  # export depends on model, not the reverse

        return export_saved_model(self, base_dir, version=version)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._flow_config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FlowModel:
        return cls(**config)
