"""Keyword arguments reach the bijectors that take them: through Chain and Invert, and from FlowModel."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import AffineCoupling, FlowModel, MLPConditioner, real_nvp
from tfp_realnvp.flows import register_flow
from tfp_realnvp.routing import HoldsConditionKeys, condition_keys, route

tfb = tfp.bijectors
tfd = tfp.distributions


class _Recorder(tfb.Bijector):
    """The identity, remembering the `training` flag of every call (as batch normalization uses it)."""

    seen: list[bool] = []

    def __init__(self, name: str = "recorder") -> None:
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True, parameters=dict(locals()), name=name)

    @property
    def condition_keys(self) -> tuple[str, ...]:
        return ("training",)

    def _forward(self, x, training=False):
        _Recorder.seen.append(training)
        return tf.identity(x)

    def _inverse(self, y, training=False):
        _Recorder.seen.append(training)
        return tf.identity(y)

    def _forward_log_det_jacobian(self, x, training=False):
        return tf.zeros([], x.dtype)


def test_route_reaches_through_chain_and_invert_by_name():
    coupling = AffineCoupling(MLPConditioner((4,), output_shape=(1,), context_size=3), num_masked=1,
                              event_shape=(2,), name="coupling")
    invert = tfb.Invert(tfb.Chain([_Recorder("inner")], name="inner_chain"), name="inverted")
    chain = tfb.Chain([tfb.Shift(1.0), invert, coupling])
    assert isinstance(coupling, HoldsConditionKeys) and coupling.condition_keys == ("context",)
    assert condition_keys(chain) == {"context", "training"}
    c = tf.ones([5, 3])
    # Chain routes by each part's name; Invert passes its keywords on to its bijector.
    assert route(chain, context=c, training=True) == {"inverted": {"inner": {"training": True}},
                                                      "coupling": {"context": c}}
    assert route(chain, context=None) == {}
    # TFP follows the routes: the recorder sees the flag, the coupling the context.
    _Recorder.seen.clear()
    y = chain.forward(tf.zeros([5, 2]), **route(chain, context=c, training=True))
    assert _Recorder.seen == [True] and y.shape == (5, 2)


def test_two_parts_of_one_name_that_take_keywords_are_refused():
    chain = tfb.Chain([_Recorder("same"), _Recorder("same")])
    with pytest.raises(ValueError, match="two bijectors named 'same' in 'chain_of_same_of_same' take keyword arguments"):
        route(chain, training=True)


def test_flow_model_passes_the_training_flag():
    def build(event_shape, *, seed, dtype):
        flow = real_nvp(event_shape, num_couplings=2, hidden_units=(4,), seed=seed, dtype=dtype)
        return tfd.TransformedDistribution(flow.distribution, tfb.Chain([_Recorder(), flow.bijector]))

    register_flow("test_recorder", build, replace=True)
    model = FlowModel(2, flow="test_recorder", standardize=False)
    model.compile(jit_compile=False)
    x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32")
    _Recorder.seen.clear()
    model.fit(x, epochs=1, batch_size=32, verbose=0)
    assert True in _Recorder.seen  # the training step (traced with training=True)
    _Recorder.seen.clear()
    model.log_prob(x)
    model.evaluate(x, verbose=0)
    model.sample(3, seed=0)
    assert _Recorder.seen and not any(_Recorder.seen)  # inference everywhere else
