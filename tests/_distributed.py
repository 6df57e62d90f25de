"""Subprocess entry points for the tf.distribute tests (strategies must be set up before TF starts).

python _distributed.py mirrored OUT.json SINGLE.npz
    Two logical CPUs; trains the same FlowModel on one device and under MirroredStrategy and
    writes both loss histories and weights; then the one-process reference of
    the workers' run (one process serves both tests: each process pays TensorFlow's import).
python _distributed.py worker OUT.npz   (TF_CONFIG set by the caller)
    One worker of a MultiWorkerMirroredStrategy cluster; writes its losses and weights.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

GLOBAL_BATCH = 64
EPOCHS = 2


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((512, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]).astype("float32")


def _train(strategy: tf.distribute.Strategy | None, dataset: bool = False):
    import keras

    from tfp_realnvp import FlowModel

    x = _data()
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = FlowModel(3, num_couplings=2, hidden_units=(16,), seed=1)
        model.adapt(x)
        # XLA off on both sides so that the kernels match; steps_per_execution is left to its
        # default: 16 on one device, 1 under several replicas.
        model.compile(keras.optimizers.SGD(0.05), jit_compile=False)
    if dataset:
        data = tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        history = model.fit(data.with_options(options), epochs=EPOCHS, verbose=0)
    else:
        history = model.fit(x, epochs=EPOCHS, batch_size=GLOBAL_BATCH, shuffle=False, verbose=0)
    losses = np.ravel(history.history["loss"]).tolist()
    return losses, [v.numpy() for v in model.trainable_variables], model.steps_per_execution


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        single_losses, single_weights, single_steps = _train(None)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        mirrored_losses, mirrored_weights, mirrored_steps = _train(strategy)
        result = dict(
            replicas=strategy.num_replicas_in_sync,
            steps_per_execution=[single_steps, mirrored_steps],
            single_losses=single_losses,
            mirrored_losses=mirrored_losses,
            max_weight_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(single_weights, mirrored_weights)),
            max_weight_change=max(float(np.max(np.abs(a))) for a in single_weights),
        )
        with open(out, "w") as f:
            json.dump(result, f)
        # The workers' training (a dataset, auto-sharded by data) on one device, for comparison.
        losses, weights, _ = _train(None, dataset=True)
        np.savez(sys.argv[3], losses=np.array(losses), replicas=1, *weights)
    elif mode == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING,
                timeout_seconds=60.0,
            )
        )
        losses, weights, _ = _train(strategy, dataset=True)
        np.savez(out, losses=np.array(losses), replicas=strategy.num_replicas_in_sync, *weights)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
