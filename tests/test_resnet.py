"""ResNetConditioner: zero at the start, any batch shape, the mask as input, its own batch statistics."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import AffineCoupling, ResNetConditioner, checkerboard_mask
from tfp_realnvp.routing import route


def _x(shape=(6, 4, 4, 2), seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), tf.float32)


def test_a_new_network_outputs_zero_for_any_batch_shape():
    conditioner = ResNetConditioner(8, 2, seed=0)
    for batch_shape in ((), (6,), (2, 3)):
        shift, log_scale = conditioner(tf.reshape(_x(), batch_shape + (4, 4, 2)) if batch_shape else _x()[0])
        assert shift.shape == log_scale.shape == batch_shape + (4, 4, 2)
        np.testing.assert_array_equal(shift, 0.0)
        np.testing.assert_array_equal(log_scale, 0.0)
    # 2 blocks of 2 convolutions, plus the input and output ones: 3x3 kernels and biases.
    assert len(conditioner.trainable_weights) == 2 * 6
    assert conditioner.count_params() == (9 * 2 * 8 + 8) + 4 * (9 * 8 * 8 + 8) + (9 * 8 * 4 + 4)


def test_trained_outputs_depend_on_the_input_and_on_the_mask():
    mask = checkerboard_mask((12, 12, 1))
    plain, masked = ResNetConditioner(8, 1, seed=0), ResNetConditioner(8, 1, mask=mask, seed=0)
    for conditioner in (plain, masked):
        conditioner.build((None, 12, 12, 2))
        for w in conditioner.weights:
            w.assign(0.3 * np.random.default_rng(1).standard_normal(w.shape))
    assert masked.weights[0].shape == (3, 3, 3, 8) and plain.weights[0].shape == (3, 3, 2, 8)
    # Four 3x3 convolutions see 4 pixels each way: pixels (5, 5) and (5, 6) are beyond the padding's
    # reach, so a convolution alone gives both the same output; the mask channel tells the squares apart.
    zero = tf.zeros([1, 12, 12, 2])
    shift_plain, shift_masked = plain(zero)[0].numpy()[0], masked(zero)[0].numpy()[0]
    # The same float32 sums at both pixels (equal here); a kernel that tiles the image otherwise may round
    # them by a few ulps of values of order 1.
    np.testing.assert_allclose(shift_plain[5, 5], shift_plain[5, 6], rtol=1e-6)
    # Weights of scale 0.3 make the differences of order 0.1-10 (measured: 0.35 and 17), far above round-off.
    assert np.max(np.abs(shift_masked[5, 5] - shift_masked[5, 6])) > 1e-2
    a, b = plain(_x((1, 12, 12, 2), seed=1))[0], plain(_x((1, 12, 12, 2), seed=2))[0]
    assert np.max(np.abs(a - b)) > 1e-2


def test_same_seed_same_weights_and_the_config_round_trips():
    a, b = ResNetConditioner(8, 1, seed=5, output_channels=3), ResNetConditioner(8, 1, seed=5, output_channels=3)
    for conditioner in (a, b):
        conditioner.build((None, 4, 4, 2))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    again = ResNetConditioner.from_config(ResNetConditioner(8, 1, mask=checkerboard_mask((4, 4, 1)),
                                                            normalization="batch").get_config())
    assert again.normalization == "batch" and again.mask.shape == (4, 4, 1)
    assert keras.saving.get_registered_object("tfp_realnvp>ResNetConditioner") is ResNetConditioner


def test_batch_normalization_inside_takes_the_training_flag_through_the_coupling():
    conditioner = ResNetConditioner(8, 1, normalization="batch", seed=0)
    coupling = AffineCoupling(conditioner, mask=checkerboard_mask((4, 4, 2)), name="coupling")
    assert coupling.condition_keys == ("training",)
    assert route(coupling, training=True) == {"training": True}
    norm = [layer for layer in conditioner._norms][0]
    before = norm.moving_mean.numpy().copy()
    coupling.inverse(_x())
    np.testing.assert_array_equal(norm.moving_mean.numpy(), before)  # inference: running statistics
    coupling.inverse(_x(), training=True)
    assert not np.array_equal(norm.moving_mean.numpy(), before)
    assert ResNetConditioner(8, 1).condition_keys == ()


def test_a_context_is_one_constant_input_channel_per_feature():
    conditioner = ResNetConditioner(8, 1, context_size=3, normalization="batch", seed=0)
    conditioner.build((None, 4, 4, 2))
    for w in conditioner.trainable_weights:
        w.assign(0.3 * np.random.default_rng(1).standard_normal(w.shape))
    assert conditioner.condition_keys == ("context", "training")
    assert conditioner.weights[0].shape == (3, 3, 2 + 3, 8)
    x, c = _x((2, 3, 4, 4, 2)), np.random.default_rng(2).standard_normal((2, 3, 3)).astype("float32")
    shift, _ = conditioner(x, context=c)
    assert shift.shape == (2, 3, 4, 4, 2)
    # Each example sees its own context; one row broadcasts to every example. Smaller batches than
    # `shift`'s (equal here) may get another convolution algorithm: a few float32 ulps of values up to ~1,
    # and atol for the entries near 0.
    np.testing.assert_allclose(conditioner(x[0, :1], context=c[0, :1])[0], shift[0, :1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conditioner(x[0], context=c[0, 0])[0][0], shift[0, 0], rtol=1e-5, atol=1e-6)
    # Another context moves the shift by order 1 (measured: 1.4), far above round-off.
    assert np.max(np.abs(conditioner(x, context=c[::-1].copy())[0] - shift)) > 1e-2
    assert ResNetConditioner.from_config(conditioner.get_config()).context_size == 3
    with pytest.raises(ValueError, match="built with context_size=3; pass context= with that many features"):
        conditioner(x)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_filters must be an integer >= 1; got 0"):
        ResNetConditioner(0)
    with pytest.raises(ValueError, match="context_size must be an integer >= 0; got -1"):
        ResNetConditioner(8, context_size=-1)
    with pytest.raises(ValueError, match=r"normalization must be one of None, 'batch'; got 'layer'"):
        ResNetConditioner(8, normalization="layer")
    with pytest.raises(ValueError, match=r"mask must be a boolean array \[H, W, m\]; got shape \(4, 4\)"):
        ResNetConditioner(8, mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 2, 1\) does not match the input's height and width 4x4"):
        ResNetConditioner(8, mask=np.ones((2, 2, 1), bool)).build((None, 4, 4, 1))
    with pytest.raises(ValueError, match=r"needs inputs \[\.\.\., H, W, C\] with static H, W, C"):
        ResNetConditioner(8).build((None, 16))
