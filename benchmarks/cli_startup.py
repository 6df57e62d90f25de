"""How fast the command line answers when it has nothing to train (issue 12): --help and argument errors.

    python benchmarks/cli_startup.py [--repeats 7] [--compare-with REV]

Times, as a user runs them, `tfp-realnvp --help`, `tfp-realnvp train --help` and an argument
error (`tfp-realnvp train --epochs 0`, exit status 2), each `--repeats` times in fresh processes,
with `python -c "import tensorflow"` beside them for scale. With `--compare-with REV` (a git
revision of this repository, e.g. the commit before the change) the same commands also run
against that revision's package, extracted with `git archive` into a temporary folder, in the
same run. Writes benchmarks/CLI_STARTUP.md. Target: every command under 1.5 s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 1.5
ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = {
    "tfp-realnvp --help": (["--help"], 0),
    "tfp-realnvp train --help": (["train", "--help"], 0),
    "tfp-realnvp train --epochs 0 (argument error)": (["train", "--epochs", "0"], 2),
}


def _time(argv: list[str], expected_status: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    seconds = time.perf_counter() - start
    if result.returncode != expected_status:
        raise RuntimeError(f"{argv} exited {result.returncode}, expected {expected_status}:\n{result.stderr}")
    return seconds


def _measure(prefix: list[str], repeats: int, env: dict[str, str]) -> dict[str, list[float]]:
    return {name: [_time([*prefix, *args], status, env) for _ in range(repeats)]
            for name, (args, status) in COMMANDS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare-with", metavar="REV", help="also time this git revision's command line")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    script = shutil.which("tfp-realnvp")
    if script is None:
        raise SystemExit("tfp-realnvp is not on PATH: pip install -e . first")
    ours = _measure([script], args.repeats, env)
    tensorflow = [_time([sys.executable, "-c", "import tensorflow"], 0, env) for _ in range(args.repeats)]
    before = None
    if args.compare_with:
        with tempfile.TemporaryDirectory() as old:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare_with, "tfp_realnvp"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            before = _measure([sys.executable, "-m", "tfp_realnvp"], args.repeats, {**env, "PYTHONPATH": old})

    def cell(times: list[float]) -> str:
        return f"{statistics.median(times):.2f} s (max {max(times):.2f})"

    heads = ["command", "median (max)"] + ([f"at {args.compare_with}", "faster"] if before else []) + ["target"]
    rows = []
    for name, times in ours.items():
        row = [f"`{name}`", cell(times)]
        if before:
            row += [cell(before[name]), f"{statistics.median(before[name]) / statistics.median(times):.0f}x"]
        met = max(times) < TARGET_S
        rows.append(row + [f"< {TARGET_S} s: {'met' if met else '**missed**'}"])
    rows.append(["`python -c \"import tensorflow\"` (for scale)", cell(tensorflow)] + (["", ""] if before else [])
                + [""])
    lines = [
        "# Command-line start-up (issue 12)",
        "",
        f"Run {datetime.date.today()} on {os.cpu_count()} cores, load average at the end {os.getloadavg()[0]:.1f}: "
        f"`python benchmarks/cli_startup.py --repeats {args.repeats}"
        + (f" --compare-with {args.compare_with}`" if args.compare_with else "`")
        + f". Each command ran {args.repeats} times in fresh processes, TF_CPP_MIN_LOG_LEVEL unset."
        + (f" The comparison runs `python -m tfp_realnvp` from `git archive {args.compare_with}`." if before else ""),
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        "None of them imports TensorFlow (tests/test_cli.py checks it): the parser and the recipes it prints are "
        "plain Python, and the package's public names load their modules on first use.",
        "",
    ]
    out = pathlib.Path(__file__).with_name("CLI_STARTUP.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
