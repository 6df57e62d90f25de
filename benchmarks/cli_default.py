"""The main job's figures (issue 5): time and test NLL of `tfp-realnvp train` with no arguments.

    python benchmarks/cli_default.py

Runs the command in a fresh temporary directory (so the repository's saved_models/ is not
touched), reads the run's metrics.json, and writes benchmarks/CLI_DEFAULT.md. Targets: about two
minutes on 2 CPU cores, test NLL <= 0.35 nats.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

TARGET_NLL = 0.35


def main() -> None:
    command = shutil.which("tfp-realnvp") or "tfp-realnvp"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([command, "train", "--verbose", "2"], cwd=tmp, check=True)
        seconds = time.perf_counter() - start
        metrics = json.loads(next(pathlib.Path(tmp, "runs").glob("*/metrics.json")).read_text())
    nll = metrics["test"]["nll"]
    lines = [
        "# `tfp-realnvp train` (the main job, issue 5)",
        "",
        f"Run {datetime.date.today()} on {os.cpu_count()} cores, load average at the end "
        f"{os.getloadavg()[0]:.1f}: `python benchmarks/cli_default.py`.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| wall time of the whole command (import, training, plots, export) | {seconds:.0f} s | about 120 s |",
        f"| training time (fit) | {metrics['training_seconds']:.0f} s | |",
        f"| test NLL (5 000 rows) | {nll:.4f} nats | <= {TARGET_NLL} "
        f"({'met' if nll <= TARGET_NLL else 'missed'}) |",
        "",
    ]
    out = pathlib.Path(__file__).with_name("CLI_DEFAULT.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
