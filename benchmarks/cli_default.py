"""The main job's figures (issues 5 and 16): time, where it goes, and test NLL of `tfp-realnvp train`
with no arguments.

    python benchmarks/cli_default.py [--runs N]

Runs the command N times (default 1) in fresh temporary directories (so the repository's
saved_models/ is not touched), reads each run's metrics.json (whose "seconds" split the run into
its phases) and writes benchmarks/CLI_DEFAULT.md. Targets (issue 16): at most 60 s wall on
2 CPU cores, test NLL at most 0.335 nats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_SECONDS = 60.0
TARGET_NLL = 0.335


def run_once() -> tuple[float, dict]:
    """`(wall seconds, metrics.json)` of one `tfp-realnvp train` in a temporary directory."""
    command = shutil.which("tfp-realnvp")
    command = [command] if command else [sys.executable, "-m", "tfp_realnvp"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([*command, "train", "--verbose", "0"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        metrics = json.loads(next(pathlib.Path(tmp, "runs").glob("*/metrics.json")).read_text())
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    runs = [run_once() for _ in range(parser.parse_args().runs)]
    walls = [wall for wall, _ in runs]
    median = statistics.median(walls)
    wall, metrics = sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2]  # the (lower) median run
    phases = metrics["seconds"]
    nlls = [m["test"]["nll"] for _, m in runs]
    nll = max(nlls)

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    lines = [
        "# `tfp-realnvp train` (the main job)",
        "",
        f"Run {datetime.date.today()} on {os.cpu_count()} cores, load average at the end "
        f"{os.getloadavg()[0]:.1f}: `python benchmarks/cli_default.py --runs {len(runs)}`"
        + (f" (walls {', '.join(f'{w:.1f}' for w in walls)} s, median {median:.1f} s; the phases of the median "
           "run below)." if len(runs) > 1 else "."),
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| wall time of the whole command{', median' if len(runs) > 1 else ''} | {median:.1f} s | "
        f"<= {TARGET_SECONDS:.0f} s ({verdict(median <= TARGET_SECONDS)}) |",
        f"| test NLL (5 000 rows){', worst run' if len(runs) > 1 else ''} | {nll:.4f} nats | "
        f"<= {TARGET_NLL} ({verdict(nll <= TARGET_NLL)}) |",
        "",
        "Where the time goes (metrics.json's `seconds`):",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| Python start, `import tfp_realnvp`, and exit (of the {wall:.1f} s run) | {wall - sum(phases.values()):.1f} |",
        f"| reading the arguments, importing TensorFlow, loading the data | {phases['start']:.1f} |",
        f"| training (`fit`: {metrics['epochs_run']} epochs, the first with the step's compilation) "
        f"| {metrics['training_seconds']:.1f} |",
        f"| building the flow, the final evaluation of the three splits | "
        f"{phases['fit_flow'] - metrics['training_seconds']:.1f} |",
        f"| model.keras and history.json | {phases['save']:.1f} |",
        f"| plots (density, samples, loss) | {phases['plots']:.1f} |",
        f"| SavedModel export | {phases['export']:.1f} |",
        "",
    ]
    out = pathlib.Path(__file__).with_name("CLI_DEFAULT.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
