"""How fast a CSV file loads, in memory and streamed (issue 21: one CSV parser, or two?).

    python benchmarks/csv_loading.py [--rows 100000] [--columns 10] [--repeats 3] [--compare-with REV]

Writes a `rows x columns` CSV of normal draws (`%.6g`), then times, each `--repeats` times in
this one process (the minimum is reported; the first call, which traces TensorFlow functions
where a parser has them, apart): `load_dataset("csv:...")` in memory, a full read of the
streamed training rows (`stream_threshold_bytes=0`), and `np.loadtxt` of the whole file for
scale. With `--compare-with REV`, the same loads also run with that revision's `data.py`
(e.g. bcf3d73, the np.loadtxt fast path beside the tf.strings parser), imported from a
temporary folder. Writes benchmarks/CSV_LOADING.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfp_realnvp import data as current  # noqa: E402  pylint: disable=wrong-import-position


def _module_at(rev: str, folder: str):
    source = subprocess.run(["git", "show", f"{rev}:tfp_realnvp/data.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = pathlib.Path(folder) / f"data_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"data_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _times(run, repeats: int) -> tuple[float, float]:
    """(first call, fastest of the rest) in seconds."""
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds[0], min(seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-with", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.csv")
        np.savetxt(path, np.random.default_rng(0).normal(size=(args.rows, args.columns)), delimiter=",", fmt="%.6g")
        spec = f"csv:{path}"
        modules = {"this tree": current}
        if args.compare_with:
            modules[args.compare_with] = _module_at(args.compare_with, folder)
        results = {}
        for name, module in modules.items():
            def in_memory(module=module):
                module.load_dataset(spec)

            def streamed(module=module):
                data = module.load_dataset(spec, stream_threshold_bytes=0)
                assert sum(len(b) for b in data.stream().batch(8192)) == data.num_train

            results[name] = {"in memory": _times(in_memory, args.repeats), "streamed": _times(streamed, args.repeats)}

        def whole_file():
            np.loadtxt(path, delimiter=",", dtype=np.float64)

        loadtxt = _times(whole_file, args.repeats)
        size = os.path.getsize(path) / 2**20
    load = os.getloadavg()[0]
    lines = [
        "# CSV loading (benchmarks/csv_loading.py)",
        "",
        f"{args.rows} rows x {args.columns} columns ({size:.1f} MiB), {datetime.date.today()}, load average "
        f"{load:.1f} on {os.cpu_count()} cores (other agents share the machine: figures are noisy; compare "
        "within this table only). Seconds: the first call (TensorFlow tracing included), then the fastest of "
        f"{args.repeats} more.",
        "",
        "| data.py | in memory: first | in memory | streamed (all training rows): first | streamed |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['in memory'][0]:.2f} | {r['in memory'][1]:.2f} | {r['streamed'][0]:.2f} | "
                     f"{r['streamed'][1]:.2f} |")
    lines += ["", f"np.loadtxt of the whole file, for scale: {loadtxt[1]:.2f} s."]
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "CSV_LOADING.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
