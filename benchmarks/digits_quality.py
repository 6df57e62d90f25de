"""Digits quality benchmark (issue 13): the image model against the vector model, a Gaussian and tfb.Glow.

Data: the command line's digits split (`load_dataset("digits")`, seed 0): 1 437 training images (the
last 10% held out for early stopping) and 360 test images, pixel levels 0..16. Every model sees
the paper's preprocessing: uniform dequantization, division by 17, `logit(0.05 + 0.95 v)`, then
each recipe's own choice: the vector recipe standardises each pixel on the training images, the
image recipe (and Glow, given the same settings) does not; every density includes that map's
log-determinant, so all figures are bits/dim of the integer data
(upper bounds, through the dequantization). Each is measured on the same 360 test images
dequantized with `np.random.default_rng(s).uniform` for `s = 0..4` (the mean of the five).

    python benchmarks/digits_quality.py [--seed 0] [--glow-steps 1,4]

The models:

- `real_nvp_multiscale`: `fit_flow(TrainingConfig.for_dataset("digits", flow="real_nvp_multiscale"))`,
  the command line's image recipe;
- `real_nvp`: `fit_flow(TrainingConfig.for_dataset("digits"))`, the vector recipe (the shipped
  `saved_models/digits/1` model);
- the image recipe with a normalization after each coupling: the paper's batch normalization,
  and Glow's ActNorm;
- a full-covariance Gaussian fitted by maximum likelihood in the logit space (20 dequantization
  draws of the training images), scored with the same preprocessing Jacobian;
- TFP's `tfb.Glow` with its default networks (`GlowDefaultNetwork`, 400 hidden channels, and
  `GlowDefaultExitNetwork`), 2 blocks of 1 step and of 4 (`--glow-steps`), chained after the same
  `Preprocessing` bijector, trained with a plain `tf.function` loop (XLA) and Keras 2's Adam (its
  layers are `tf_keras` ones): the image recipe's epochs, batch, learning rate with cosine decay,
  gradient clipping, validation split and early stopping that keeps the best weights.

Samples/s: `sample(1000)` in one `tf.function` (numpy for the Gaussian), to data space, median of
five timed calls after a warm-up, in the same run. Writes benchmarks/DIGITS.md. About 25
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfp_realnvp
from tfp_realnvp import Preprocessing
from tfp_realnvp.data import load_dataset
from tfp_realnvp.examples import split_sizes
from tfp_realnvp.training import TrainingConfig, fit_flow

tfb, tfd = tfp.bijectors, tfp.distributions

TARGET = 2.10  # issue 13: the image model at most this, and below the vector model
DRAWS = 5  # dequantization draws of the test images
SAMPLES = 1000
LEVELS, ALPHA, SHAPE = 17, 0.05, (8, 8, 1)
OUT = pathlib.Path(__file__).with_name("DIGITS.md")


def bits_per_dim(log_prob, x_int: np.ndarray) -> float:
    """Mean over the `DRAWS` dequantizations of `-mean(log_prob) / (64 ln 2)`."""
    values = []
    for s in range(DRAWS):
        x = (x_int + np.random.default_rng(s).uniform(size=x_int.shape)).astype("float32")
        values.append(-float(np.mean(np.asarray(log_prob(x), np.float64))) / (x_int[0].size * math.log(2.0)))
    return float(np.mean(values))


def samples_per_second(sample) -> float:
    sample()  # tracing, compilation
    times = []
    for _ in range(5):
        started = time.perf_counter()
        np.asarray(sample())
        times.append(time.perf_counter() - started)
    return SAMPLES / statistics.median(times)


def trainable_weights(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def flow_model_row(name: str, config: TrainingConfig, x_test: np.ndarray) -> dict:
    result = fit_flow(config, verbose=0)
    model = result.model
    sample = tf.function(lambda: model.sample(SAMPLES, seed=1), autograph=False)
    return dict(model=name, bits=bits_per_dim(lambda x: model.log_prob(x.reshape(-1, *model.event_shape)), x_test),
                weights=trainable_weights(model.trainable_variables), seconds=result.training_seconds,
                samples=samples_per_second(sample),
                notes=f"{result.epochs_run} epochs (best {result.best_epoch}); {_architecture(config)}")


def _architecture(config: TrainingConfig) -> str:
    o = config.flow_options
    if config.flow == "real_nvp":
        text = f"{o['num_couplings']} couplings of {','.join(map(str, o['hidden_units']))}, {o['permutation']} permutations"
    else:
        text = (f"{o['num_scales']} scales, {o['num_checkerboard_couplings']}+{o['num_channel_couplings']}+"
                f"{o['num_final_couplings']} couplings, {o['num_filters']} filters x {o['num_blocks']} block, "
                f"normalization {o['normalization']}")
    return text + ("" if config.standardize else ", no per-pixel standardisation")


def _logit_space(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`w = logit(alpha + (1 - alpha) x / 17)` per pixel and `log|dw/dx|` per image."""
    p = ALPHA + (1.0 - ALPHA) * np.asarray(x, np.float64) / LEVELS
    w = np.log(p) - np.log1p(-p)
    log_det = np.sum(np.log((1.0 - ALPHA) / LEVELS) - np.log(p) - np.log1p(-p), axis=1)
    return w, log_det


def gaussian_row(train: np.ndarray, x_test: np.ndarray) -> dict:
    started = time.perf_counter()
    rng = np.random.default_rng(123)
    w = np.concatenate([_logit_space(train + rng.uniform(size=train.shape))[0] for _ in range(20)])
    mean, cov = w.mean(axis=0), np.cov(w, rowvar=False, bias=True)
    chol = np.linalg.cholesky(cov)
    seconds = time.perf_counter() - started
    log_norm = -0.5 * len(mean) * math.log(2 * math.pi) - np.sum(np.log(np.diag(chol)))

    def log_prob(x):
        w_x, log_det = _logit_space(x.reshape(len(x), -1))
        white = np.linalg.solve(chol, (w_x - mean).T).T
        return log_norm - 0.5 * np.sum(white**2, axis=1) + log_det

    def sample():
        w_s = mean + rng.standard_normal((SAMPLES, len(mean))) @ chol.T
        return (1.0 / (1.0 + np.exp(-w_s)) - ALPHA) / (1.0 - ALPHA) * LEVELS

    return dict(model="full-covariance Gaussian (logit space)", bits=bits_per_dim(log_prob, x_test),
                weights=len(mean) + len(mean) * (len(mean) + 1) // 2, seconds=seconds,
                samples=samples_per_second(sample), notes="maximum likelihood on 20 dequantizations of the "
                                                          "1 437 training images")


def glow_row(config: TrainingConfig, train: np.ndarray, x_test: np.ndarray, steps: int, seed: int) -> dict:
    tf.keras.utils.set_random_seed(seed)
    n_fit, _ = split_sizes(len(train), config.validation_split, streamed=False)
    x_fit, x_val = train[:n_fit].reshape(-1, *SHAPE), train[n_fit:].reshape(-1, *SHAPE)
    glow = tfb.Glow(output_shape=SHAPE, num_glow_blocks=2, num_steps_per_block=steps,
                    coupling_bijector_fn=tfb.GlowDefaultNetwork, exit_bijector_fn=tfb.GlowDefaultExitNetwork,
                    seed=seed)
    preprocessing = Preprocessing(SHAPE, standardize=config.standardize, integer_levels=LEVELS, logit_alpha=ALPHA)
    preprocessing.adapt(x_fit)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), glow.inverse_event_shape(SHAPE)),
                                       tfb.Chain([preprocessing.bijector(), glow]))  # the preprocessing's log-det too

    def dequantize(x):
        noisy = x + tf.random.uniform(tf.shape(x))
        # Below the next level, as FlowModel's cap (tf.math.nextafter(x + 1, x)) keeps it, to an ulp.
        return tf.minimum(noisy, (x + 1.0) * (1.0 - np.finfo(np.float32).eps))

    rng = np.random.default_rng(seed)
    dist.log_prob(dequantize(x_fit[rng.permutation(n_fit)[: config.batch_size]]))  # ActNorm's data-dependent init
    variables = glow.trainable_variables
    steps_per_epoch = math.ceil(n_fit / config.batch_size)
    schedule = tf_keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch)
    optimizer = tf_keras.optimizers.Adam(schedule, global_clipnorm=config.clipnorm)

    @tf.function(jit_compile=True, autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(dequantize(x)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    evaluate = tf.function(lambda x: -tf.reduce_mean(dist.log_prob(dequantize(x))), jit_compile=True, autograph=False)
    best, best_values, since, epochs, started = math.inf, None, 0, 0, time.perf_counter()
    for epoch in range(config.epochs):
        order = rng.permutation(n_fit)
        for i in range(steps_per_epoch):
            step(tf.constant(x_fit[order[i * config.batch_size:(i + 1) * config.batch_size]]))
        val = float(evaluate(tf.constant(x_val)))
        epochs = epoch + 1
        if val < best:
            best, best_values, since, best_epoch = val, [v.numpy() for v in variables], 0, epochs
        else:
            since += 1
            if since >= config.patience:
                break
    seconds = time.perf_counter() - started
    for v, value in zip(variables, best_values):
        v.assign(value)
    log_prob = tf.function(lambda x: dist.log_prob(tf.reshape(x, [-1, *SHAPE])), autograph=False)
    sample = tf.function(lambda: dist.sample(SAMPLES, seed=(1, 2)), autograph=False)
    return dict(model=f"tfb.Glow, 2 blocks x {steps} step{'s' * (steps > 1)}", bits=bits_per_dim(log_prob, x_test),
                weights=trainable_weights(variables), seconds=seconds, samples=samples_per_second(sample),
                notes=f"{epochs} epochs (best {best_epoch}); GlowDefaultNetwork (400 hidden), "
                      "GlowDefaultExitNetwork; the image recipe's optimisation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--glow-steps", default="1,4", help="steps per Glow block, one Glow each (default 1,4)")
    args = parser.parse_args()
    data = load_dataset("digits")
    train, x_test = data.train.astype("float32"), data.test.astype("float32").reshape(-1, *SHAPE)
    image = TrainingConfig.for_dataset("digits", flow="real_nvp_multiscale", seed=args.seed)
    vector = TrainingConfig.for_dataset("digits", seed=args.seed)
    rows = []
    variants = [image.replace(flow_options={"normalization": kind}) for kind in ("batch", "actnorm")]
    for make in (lambda: flow_model_row("real_nvp_multiscale (image)", image, x_test),
                 lambda: flow_model_row("real_nvp (vector)", vector, x_test),
                 lambda: flow_model_row("real_nvp_multiscale, batch normalization", variants[0], x_test),
                 lambda: flow_model_row("real_nvp_multiscale, ActNorm", variants[1], x_test),
                 lambda: gaussian_row(train, x_test),
                 *[lambda steps=int(k): glow_row(image, train, x_test, steps, args.seed)
                   for k in args.glow_steps.split(",")]):
        rows.append(make())
        r = rows[-1]
        print(f"{r['model']}: {r['bits']:.4f} bits/dim, {r['weights']:,} weights, {r['seconds']:.0f} s, "
              f"{r['samples']:,.0f} samples/s", flush=True)
    image_bits, vector_bits = rows[0]["bits"], rows[1]["bits"]
    met = image_bits <= TARGET and image_bits < vector_bits
    verdict = (f"Image model {image_bits:.4f} bits/dim, vector model {vector_bits:.4f}; target <= {TARGET:.2f} and "
               f"below the vector model: {'met' if met else 'missed'}.")
    print(verdict)
    lines = [
        "# Digits: the image model against the vector model, a Gaussian and tfb.Glow",
        "",
        f"`python benchmarks/digits_quality.py --seed {args.seed} --glow-steps {args.glow_steps}`, "
        f"{datetime.date.today().isoformat()}, tfp_realnvp {tfp_realnvp.__version__}, TensorFlow {tf.__version__}, "
        f"TFP {tfp.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores.",
        "",
        "Test bits/dim of the 360 integer test images of the command line's split, each dequantized five "
        "times (`np.random.default_rng(s).uniform`, s = 0..4), preprocessing Jacobian included; trainable "
        "weights; training time (fit, all epochs); samples/s of `sample(1000)` to data space, median of 5.",
        "",
        "| model | test bits/dim | trainable weights | training (s) | samples/s | notes |",
        "|---|---|---|---|---|---|",
        *[f"| {r['model']} | {r['bits']:.4f} | {r['weights']:,} | {r['seconds']:.0f} | {r['samples']:,.0f} | "
          f"{r['notes']} |" for r in rows],
        "",
        verdict,
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
