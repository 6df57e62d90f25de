"""Latency (batch 1) and throughput (batch 4096) of log_prob in onnxruntime and the LiteRT interpreter
against TensorFlow's C++ SavedModel loader, in one run, with the agreement of each runtime.

    PYTHONPATH=. python benchmarks/export_runtimes.py [MODEL ...]   # writes benchmarks/EXPORT.md

MODEL defaults to two_moons (a folder under saved_models/, version 1).
"""

from __future__ import annotations

import datetime
import pathlib
import sys
import tempfile
import time

import numpy as np

from tfp_realnvp.export import equivalence, graphs, litert, onnx
from tfp_realnvp.export.saved_model import load_exported_model
from tfp_realnvp.serving_check import run_signature_c, time_signature_c

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPEATS = {1: 300, 4096: 20}


def _time(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(names: list[str]) -> None:
    rows = ["# Export runtimes: log_prob, median seconds per call\n",
            f"Measured {datetime.date.today()} on this machine's 2 cores, shared with other jobs (noisy: compare "
            f"ratios within a row). Agreement: largest |runtime - C++ loader| on {equivalence.ROWS} rows drawn "
            "from the model.\n",
            "| model | runtime | batch 1 latency (ms) | batch 4096 (rows/s) | vs C++ at 4096 | largest difference (nats) |",
            "|---|---|---|---|---|---|"]
    for name in names:
        version = ROOT / "saved_models" / name / "1"
        model = load_exported_model(version)
        frozen = graphs.FrozenSignature(*graphs.convertible_signatures(model)["log_prob"])
        fixed = equivalence.fixed_inputs(model)["log_prob"]
        want = run_signature_c(version, "log_prob", fixed)["log_prob"]
        with tempfile.TemporaryDirectory() as tmp:
            files = {"onnxruntime": (onnx, onnx.run_onnx, pathlib.Path(tmp) / "m.onnx"),
                     "LiteRT interpreter": (litert, litert.run_litert, pathlib.Path(tmp) / "m.tflite")}
            results = {}
            for batch in REPEATS:
                x = np.resize(fixed["x"], (batch, *model.event_shape)).astype(np.float32)
                results.setdefault("C++ loader", []).append(
                    float(np.median(time_signature_c(version, "log_prob", {"x": x}, repeats=REPEATS[batch]))))
            agree = {"C++ loader": 0.0}
            for runtime, (module, run, file) in files.items():
                if not file.exists():
                    module.convert_signature(frozen, file)
                agree[runtime] = float(np.abs(run(file, fixed)["log_prob"] - want).max())
                if module is onnx:
                    import onnxruntime
                    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
                    call = lambda x: session.run(None, {"x": x})  # noqa: E731
                else:
                    from ai_edge_litert.interpreter import Interpreter
                    runner = Interpreter(model_path=str(file)).get_signature_runner()
                    call = lambda x: runner(x=x)  # noqa: E731
                for batch in REPEATS:
                    x = np.resize(fixed["x"], (batch, *model.event_shape)).astype(np.float32)
                    results.setdefault(runtime, []).append(_time(lambda: call(x), REPEATS[batch]))
        for runtime, (t1, t4096) in results.items():
            ratio = results["C++ loader"][1] / t4096
            rows.append(f"| {name} | {runtime} | {t1 * 1e3:.3f} | {4096 / t4096:,.0f} | {ratio:.2f}x | "
                        f"{agree[runtime]:.2g} |")
    text = "\n".join(rows) + "\n"
    (ROOT / "benchmarks" / "EXPORT.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:] or ["two_moons"])
