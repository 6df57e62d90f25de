"""Build SplineCoupling on `tfb.RationalQuadraticSpline`, or write the spline? Both measured, side by side.

Run from the repository root (about 3 minutes on 2 loaded cores):

```none
python benchmarks/spline_choice.py      # writes benchmarks/SPLINE_CHOICE.md
```

The two contenders take the same normalised parameters (the same minimum bin sizes and
derivatives, `tfp_realnvp.bijectors.spline_coupling`): "ours" is `rational_quadratic_spline`,
"tfp" is `tfb.RationalQuadraticSpline(bin_widths, bin_heights, knot_slopes, range_min=-B)`
swapped in for it. Measured:

- float32 round trip `max |x - g^{-1}(g(x))|` over 50,000 draws of `x` in `[-B, B]` and raw
  parameters of scale 1, 10 and 1e6;
- whether `tf.function(jit_compile=True)` compiles forward, inverse and log-det, and the speed of
  `log_prob` of an 8-coupling spline flow (event 2, batch 4096) in TensorFlow's graph and in XLA;
- the export: `export_saved_model` of that flow run through TensorFlow's C++ loader
  (`tfp_realnvp.serving_check`), `tf2onnx.convert.from_function` (opset 13) run in onnxruntime,
  and TF's LiteRT converter (`from_concrete_functions`, builtin ops only) run in ai_edge_litert's
  interpreter, each on a spline coupling's forward, inverse and log-det, against TensorFlow.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfp_realnvp import FlowModel, MLPConditioner, SplineCoupling, export_saved_model  # noqa: E402
from tfp_realnvp.bijectors import spline_coupling  # noqa: E402
from tfp_realnvp.serving_check import run_signature_c  # noqa: E402

tfb = tfp.bijectors
HERE = Path(__file__).resolve().parent
B, K = 3.0, 8
OURS = spline_coupling.rational_quadratic_spline


def tfp_spline(x, params, *, tail_bound, inverse=False):
    """TFP's spline on the same normalised parameters as ours."""
    num_bins = (params.shape[-1] + 1) // 3
    w, h, d = tf.split(params, [num_bins, num_bins, num_bins - 1], axis=-1)
    spread = 1.0 - spline_coupling.MIN_BIN_SIZE * num_bins
    widths = 2 * tail_bound * (spline_coupling.MIN_BIN_SIZE + spread * tf.nn.softmax(w, axis=-1))
    heights = 2 * tail_bound * (spline_coupling.MIN_BIN_SIZE + spread * tf.nn.softmax(h, axis=-1))
    slopes = spline_coupling.MIN_DERIVATIVE + tf.nn.softplus(
        tf.minimum(d + spline_coupling._DERIVATIVE_SHIFT, spline_coupling.MAX_DERIVATIVE))
    bijector = tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-tail_bound)
    if inverse:
        return bijector.inverse(x), -bijector.inverse_log_det_jacobian(x, event_ndims=0)
    return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=0)


CONTENDERS = {"ours": OURS, "tfp": tfp_spline}


def use(name: str) -> None:
    spline_coupling.rational_quadratic_spline = CONTENDERS[name]


def round_trip(fn) -> dict[str, float]:
    rng = np.random.default_rng(0)
    errors = {}
    for scale in (1.0, 10.0, 1e6):
        params = tf.constant(scale * rng.standard_normal((50000, 3 * K - 1)), tf.float32)
        x = tf.constant(rng.uniform(-B, B, 50000), tf.float32)
        y, _ = fn(x, params, tail_bound=B)
        back, _ = fn(y, params, tail_bound=B, inverse=True)
        errors[f"{scale:g}"] = float(tf.reduce_max(tf.abs(back - x)))
    return errors


def coupling() -> SplineCoupling:
    conditioner = MLPConditioner((16,), output_shape=(-(-SplineCoupling.params_size((2,), K) // 2),), seed=0)
    layer = SplineCoupling(conditioner, num_masked=2, event_shape=(4,), num_bins=K, tail_bound=B)
    rng = np.random.default_rng(1)
    for w in layer.trainable_variables:
        w.assign(0.5 * rng.standard_normal(w.shape).astype("float32"))
    return layer


def functions(layer: SplineCoupling) -> dict[str, tf.types.experimental.ConcreteFunction]:
    spec = [tf.TensorSpec([None, 4], tf.float32)]
    return {
        "forward": tf.function(lambda x: layer.forward(x), input_signature=spec),
        "inverse": tf.function(lambda y: layer.inverse(y), input_signature=spec),
        "log_det": tf.function(lambda x: layer.forward_log_det_jacobian(x, event_ndims=1), input_signature=spec),
    }


def xla(layer: SplineCoupling) -> str:
    x = tf.constant(np.random.default_rng(2).uniform(-4, 4, (64, 4)), tf.float32)
    try:
        for name, fn in functions(layer).items():
            compiled = tf.function(fn.python_function, jit_compile=True)
            np.testing.assert_allclose(compiled(x), fn(x), atol=1e-4)
    except Exception as error:  # noqa: BLE001 -- the failure is the measurement
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return "compiles, matches the graph"


def onnx(layer: SplineCoupling) -> str:
    import onnxruntime
    import tf2onnx

    x = np.random.default_rng(3).uniform(-4, 4, (64, 4)).astype("float32")
    worst = 0.0
    try:
        for name, fn in functions(layer).items():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=13)
            session = onnxruntime.InferenceSession(proto.SerializeToString())
            (out,) = session.run(None, {session.get_inputs()[0].name: x})
            worst = max(worst, float(np.max(np.abs(out - fn(x).numpy()))))
    except Exception as error:  # noqa: BLE001
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return f"converts; onnxruntime matches TF to {worst:.1e}"


def litert(layer: SplineCoupling) -> str:
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(4).uniform(-4, 4, (64, 4)).astype("float32")
    worst = 0.0
    try:
        for name, fn in functions(layer).items():
            concrete = fn.get_concrete_function()
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            interpreter = Interpreter(model_content=converter.convert())
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            worst = max(worst, float(np.max(np.abs(out - fn(x).numpy()))))
    except Exception as error:  # noqa: BLE001
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return f"converts; the interpreter matches TF to {worst:.1e}"


def flow_model() -> FlowModel:
    model = FlowModel(2, num_couplings=8, hidden_units=(64, 64), transform="spline", num_bins=K, tail_bound=B,
                      standardize=False)
    rng = np.random.default_rng(5)
    for w in model.trainable_weights:
        w.assign(0.3 * rng.standard_normal(w.shape).astype("float32"))
    return model


def serving(model: FlowModel) -> str:
    x = np.random.default_rng(6).normal(size=(32, 2)).astype("float32")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_saved_model(model, Path(tmp) / "export")
            served = run_signature_c(path, "serving_default", {"x": x})["log_prob"]
        worst = float(np.max(np.abs(served - model.log_prob(x).numpy())))
    except Exception as error:  # noqa: BLE001
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return f"serves; log_prob matches TF to {worst:.1e}"


def speed(model: FlowModel) -> dict[str, float]:
    x = tf.constant(np.random.default_rng(7).normal(size=(4096, 2)), tf.float32)
    rates = {}
    for label, jit in (("graph", False), ("xla", True)):
        fn = tf.function(lambda x: model.distribution.log_prob(x), jit_compile=jit)
        fn(x)
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                fn(x).numpy()
            best = min(best, (time.perf_counter() - start) / 10)
        rates[label] = 4096 / best
    return rates


def main() -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()[0]
    results = {}
    for name in CONTENDERS:
        use(name)
        layer = coupling()
        model = flow_model()
        results[name] = dict(round_trip=round_trip(CONTENDERS[name]), xla=xla(layer), onnx=onnx(layer),
                             litert=litert(layer), serving=serving(model), speed=speed(model))
        print(name, results[name], flush=True)
    use("ours")
    lines = [
        "# Spline: tfb.RationalQuadraticSpline or our own",
        "",
        f"Measured by `benchmarks/spline_choice.py` on {started:%Y-%m-%d %H:%M} UTC, 2 CPU cores shared with "
        f"other jobs (load average {load:.1f} at start): speeds are good only as ratios within this run.",
        "Both take the same normalised parameters (bins >= 1e-2 of the box, knot derivatives in [1e-2, 10]).",
        "",
        "| | ours (`rational_quadratic_spline`) | `tfb.RationalQuadraticSpline` |",
        "|---|---|---|",
    ]
    for scale in results["ours"]["round_trip"]:
        lines.append(f"| float32 round trip, raw parameters of scale {scale} | "
                     f"{results['ours']['round_trip'][scale]:.1e} | {results['tfp']['round_trip'][scale]:.1e} |")
    for key, label in (("xla", "XLA (`jit_compile=True`)"), ("serving", "SavedModel in TF's C++ loader"),
                       ("onnx", "tf2onnx `from_function` (opset 13) + onnxruntime"),
                       ("litert", "LiteRT converter (builtin ops) + interpreter")):
        lines.append(f"| {label} | {results['ours'][key]} | {results['tfp'][key]} |")
    for key in ("graph", "xla"):
        ours, theirs = results["ours"]["speed"][key], results["tfp"]["speed"][key]
        lines.append(f"| log_prob, 8 spline couplings, batch 4096, {key} (samples/s) | {ours:,.0f} ({ours / theirs:.2f}x)"
                     f" | {theirs:,.0f} |")
    (HERE / "SPLINE_CHOICE.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
