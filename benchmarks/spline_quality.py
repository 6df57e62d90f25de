"""Spline couplings and learned mixing against the affine flows, at the recipes' own budgets.

```none
python benchmarks/spline_quality.py moons     # two moons: the main job's recipe, affine vs spline (~3 min)
python benchmarks/spline_quality.py digits    # digits as 8x8 images: affine, spline, 1x1 mixing (~15 min)
```

Each part trains with `fit_flow(TrainingConfig.for_dataset(...))`, the command line's own recipe
(`tfp-realnvp train`'s defaults: two moons 8 couplings of 128x128, 60 epochs of batch 512; digits
`--flow real_nvp_multiscale`), changing only the flow options named in the table, seed 0, and
reports the test figures `fit_flow` computes (nats for two moons, bits/dim for digits). Results
go to benchmarks/SPLINE_QUALITY.json (one entry per part, kept across runs) and the table in
benchmarks/SPLINE.md.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfp_realnvp.training import TrainingConfig, fit_flow  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "SPLINE_QUALITY.json"
TARGETS = {"moons": 0.310, "digits": 1.97}

PARTS = {
    "moons": ("two_moons", None, {
        "affine (the main job)": {},
        "spline, 8 bins": {"transform": "spline"},
    }),
    # The affine image recipe's own figure is the README's (2.0099 bits/dim, the same recipe and seed):
    # not re-run here, for time.
    "digits": ("digits", "real_nvp_multiscale", {
        "spline couplings, 8 bins": {"transform": "spline"},
        "affine + 1x1 mixing": {"mixing": "1x1"},
        # Logit-space pixels sit near -2.9 (background) and spread past 3 through the couplings.
        "spline couplings, 8 bins, tail_bound 6": {"transform": "spline", "tail_bound": 6.0},
    }),
}


def run(part: str, only: str | None = None) -> dict:
    """Trains the part's variants, or the one labelled `only` (main keeps the earlier rows beside it)."""
    dataset, flow, variants = PARTS[part]
    rows = {}
    for label, options in variants.items():
        if only is not None and label != only:
            continue
        config = TrainingConfig.for_dataset(dataset, **({"flow": flow} if flow else {}), flow_options=options)
        start = time.perf_counter()
        result = fit_flow(config, verbose=0)
        test = result.metrics["test"]
        rows[label] = {"options": options, "test_nll": test["nll"], "test_bits_per_dim": test.get("bits_per_dim"),
                       "epochs": len(result.history.get("loss", [])), "seconds": round(time.perf_counter() - start)}
        print(part, label, rows[label], flush=True)
    return {"date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "load_average": round(os.getloadavg()[0], 1), "rows": rows}


def table(results: dict) -> str:
    lines = ["# Spline couplings and learned mixing: quality", "",
             "Written by `benchmarks/spline_quality.py`: `fit_flow` on the command line's recipe, seed 0, only "
             "the flow options below changed. 2 CPU cores shared with other jobs (the load average is beside "
             "each part): the seconds are only indicative.", ""]
    for part in ("moons", "digits"):
        if part not in results:
            continue
        entry = results[part]
        unit = "test NLL (nats)" if part == "moons" else "test bits/dim"
        lines += [f"## {'Two moons' if part == 'moons' else 'Digits as 8x8 images'} ({entry['date']}, load "
                  f"{entry['load_average']})", "", f"| flow | {unit} | epochs | training (s) |", "|---|---|---|---|"]
        for label, row in entry["rows"].items():
            value = row["test_nll"] if part == "moons" else row["test_bits_per_dim"]
            lines.append(f"| {label} | {value:.4f} | {row['epochs']} | {row['seconds']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parts = argv or ["moons"]  # "PART" runs its variants, "PART:LABEL" one of them beside the earlier rows
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for arg in parts:
        part, _, only = arg.partition(":")
        entry = run(part, only or None)
        # Read again before writing: another run may have written its rows meanwhile.
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        if only:
            entry["rows"] = {**results.get(part, {}).get("rows", {}), **entry["rows"]}
        results[part] = entry
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "SPLINE.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
