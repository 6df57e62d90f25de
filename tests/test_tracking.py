"""Every weight tracked: no Keras layer or variable of a flow escapes the FlowModel that holds it."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import AffineCoupling, FlowModel, real_nvp
from tfp_realnvp.flows import register_flow
from tfp_realnvp.tracking import HoldsKerasLayers, keras_layers, parts, untracked_layers, untracked_variables

tfb = tfp.bijectors
tfd = tfp.distributions


class _LearnedShift(tfb.Bijector):
    """`y = x + b`, with `b` in a Keras layer this bijector makes itself (as ActNorm will)."""

    def __init__(self, size: int, *, declare: bool = True, name: str = "learned_shift") -> None:
        parameters = dict(locals())
        self._layer = keras.layers.Dense(size, use_bias=True, kernel_initializer="zeros", name=f"{name}_layer")
        self._layer.build((None, 1))
        self._declare = declare
        super().__init__(forward_min_event_ndims=1, parameters=parameters, name=name)
        # Keras 3 layers are not tf.Modules: keep their variables, as AffineCoupling does.
        self._variables = tuple(w.value for w in self._layer.weights)

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        return (self._layer,) if self._declare else ()

    def _shift(self, x: tf.Tensor) -> tf.Tensor:
        return self._layer(tf.ones_like(x[..., :1]))

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        return x + self._shift(x)

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        return y - self._shift(y)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return tf.zeros_like(x[..., 0])


def _shifted_flow(declare: bool) -> Any:
    def build(event_shape, *, seed, dtype, num_couplings=2):
        flow = real_nvp(event_shape, num_couplings=num_couplings, hidden_units=(8,), seed=seed, dtype=dtype)
        return tfd.TransformedDistribution(flow.distribution, tfb.Chain([_LearnedShift(event_shape[0], declare=declare),
                                                                         flow.bijector]))
    return build


register_flow("test_declared_shift", _shifted_flow(declare=True), replace=True)
register_flow("test_undeclared_shift", _shifted_flow(declare=False), replace=True)


def _all_keras_layers(root: Any) -> list[keras.layers.Layer]:
    """Every Keras layer reachable from the flow's bijectors and distributions through their attributes."""
    found: dict[int, keras.layers.Layer] = {}

    def visit(value: Any, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(value, keras.layers.Layer):
            found.setdefault(id(value), value)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, depth + 1)

    for part in parts(root):
        for value in vars(part).values():
            visit(value, 0)
    return list(found.values())


def _assert_every_layer_tracked(model: FlowModel) -> None:
    tracked = {id(w.value) for w in model.weights}
    trained = {id(getattr(v, "value", v)) for v in model.trainable_variables}  # Keras or tf.Variables
    layers = _all_keras_layers(model.distribution)
    assert layers, "the flow holds no Keras layer: the walk found nothing to check"
    for layer in layers:
        missing = [w.name for w in layer.weights if id(w.value) not in tracked]
        assert not missing, f"{layer.name}'s weights {missing} escape the model"
        untrained = [w.name for w in layer.trainable_weights if id(w.value) not in trained]
        assert not untrained, f"{layer.name}'s trainable weights {untrained} escape model.trainable_variables"
    assert untracked_variables(model.distribution, model.weights) == []


@pytest.mark.parametrize("options", [dict(), dict(log_scale_bound="sigmoid"), dict(permutation="random")],
                         ids=["tanh", "sigmoid", "random"])
def test_no_layer_of_real_nvp_escapes_the_model(options):
    model = FlowModel(3, num_couplings=3, hidden_units=(8,), integer_levels=5, logit_alpha=0.05, **options)
    _assert_every_layer_tracked(model)
    # 3 couplings x (2 dense layers of kernel and bias), plus a tanh scale each.
    assert len(model.trainable_variables) == 3 * 4 + (3 if "log_scale_bound" not in options else 0)


@pytest.mark.parametrize("options", [dict(normalization="none"), dict(normalization="batch"),
                                     dict(normalization="actnorm"),
                                     dict(normalization="none", conditioner_normalization="batch")],
                         ids=["none", "batch", "actnorm", "conditioner_batch"])
def test_no_layer_of_real_nvp_multiscale_escapes_the_model(options):
    # The image flow's layers sit in couplings, normalizations and a FactorOut's inner chain, and
    # the batch and act normalizations keep non-trainable state (running statistics, a flag).
    model = FlowModel(event_shape=(4, 4, 1), flow="real_nvp_multiscale", num_filters=4, num_blocks=1,
                      num_checkerboard_couplings=1, num_channel_couplings=1, num_final_couplings=1,
                      standardize=False, **options)
    _assert_every_layer_tracked(model)
    layers = keras_layers(model.distribution)
    assert untracked_layers(model.distribution) == []
    # Three couplings, each a ResNetConditioner and its tanh scale; a normalization after each.
    assert len(layers) == 3 * 2 + (3 if options["normalization"] != "none" else 0)
    expected = sum(len(layer.trainable_weights) for layer in layers)
    assert len(model.trainable_variables) == expected


def test_a_bijector_that_declares_its_layer_is_trained_and_saved(tmp_path):
    model = FlowModel(2, flow="test_declared_shift", num_couplings=2, standardize=False)
    _assert_every_layer_tracked(model)
    shift = next(p for p in parts(model.distribution) if isinstance(p, _LearnedShift))
    assert isinstance(shift, HoldsKerasLayers)
    bias = next(w for w in shift.keras_layers[0].weights if "bias" in w.name)
    model.compile(keras.optimizers.Adam(0.05), jit_compile=False)
    x = np.random.default_rng(0).normal(3.0, 0.5, size=(256, 2)).astype("float32")  # mean 3: the shift learns it
    model.fit(x, epochs=3, batch_size=64, verbose=0)
    # From 0, 12 Adam steps of lr 0.05 toward a mean of 3 move it by up to ~0.6: more than one step's 0.05.
    assert np.all(np.abs(bias.numpy()) > 0.05), bias.numpy()
    model.save(tmp_path / "shift.keras")
    loaded = keras.models.load_model(tmp_path / "shift.keras")
    np.testing.assert_array_equal(loaded.log_prob(x[:5]), model.log_prob(x[:5]))


def test_a_bijector_that_hides_a_layer_is_refused():
    # Its layer would be neither trained nor saved: fit would silently leave it at its initial value.
    with pytest.raises(TypeError, match=r"holds Keras layers that its bijectors do not list in keras_layers: "
                                        r"learned_shift\._layer \(learned_shift_layer\)"):
        FlowModel(2, flow="test_undeclared_shift", num_couplings=2)


class _Holder:
    """A plain helper object, as a bijector might keep its network in."""

    def __init__(self) -> None:
        self.network = keras.layers.Dense(2, name="hidden_in_a_helper")


def test_a_layer_hidden_in_a_helper_object_is_refused():
    flow = real_nvp(2, num_couplings=1, hidden_units=(4,))
    shift = _LearnedShift(2, name="helped_shift")
    shift._helper = _Holder()  # pylint: disable=protected-access
    nested = tfd.TransformedDistribution(flow.distribution, tfb.Chain([shift, flow.bijector]))
    assert [(owner, attribute, layer.name) for owner, attribute, layer in untracked_layers(nested)] == [
        ("helped_shift", "_helper", "hidden_in_a_helper")]


def test_a_plain_callable_conditioner_holding_layers_is_refused():
    class Conditioner:  # not a Keras layer: a keras.Model would never see its Dense
        def __init__(self):
            self.dense = keras.layers.Dense(2, kernel_initializer="zeros", name="plain_conditioner_dense")

        def __call__(self, x1):
            shift, log_scale = tf.split(self.dense(x1), 2, axis=-1)
            return shift, log_scale

    def build(event_shape, *, seed, dtype):
        coupling = AffineCoupling(Conditioner(), num_masked=1, event_shape=event_shape, name="plain_coupling")
        return tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), event_shape), coupling)

    register_flow("test_plain_conditioner", build, replace=True)
    with pytest.raises(TypeError, match=r"plain_coupling\._conditioner \(plain_conditioner_dense\)"):
        FlowModel(2, flow="test_plain_conditioner")


def test_a_variable_outside_any_layer_is_refused():
    def build(event_shape, *, seed, dtype):
        flow = real_nvp(event_shape, num_couplings=1, hidden_units=(4,), seed=seed, dtype=dtype)
        loose = tf.Variable(tf.zeros(event_shape, dtype), name="loose_shift")
        return tfd.TransformedDistribution(flow.distribution, tfb.Chain([tfb.Shift(loose), flow.bijector]))

    register_flow("test_loose_variable", build, replace=True)
    with pytest.raises(TypeError, match="holds tf.Variables outside any Keras layer: loose_shift"):
        FlowModel(2, flow="test_loose_variable")


def test_keras_layers_walks_through_invert_and_nested_distributions():
    flow = real_nvp(2, num_couplings=2, hidden_units=(4,))
    nested = tfd.TransformedDistribution(flow, tfb.Invert(tfb.Chain([_LearnedShift(2)])))
    layers = keras_layers(nested)
    assert len(layers) == len(keras_layers(flow)) + 1 == 5
    assert untracked_layers(nested) == []
