"""Your own table, the csv defaults against the baselines a user could fit instead: benchmarks/TABLES.md.

Each table ships with an installed package (scikit-learn; no download): iris 150x4, wine 178x13,
diabetes 442x10, breast_cancer 569x30, digits 1797x64 as a table (pixels 0..16 plus U[0, 1)
noise drawn with a fixed seed, so the table is continuous and no column constant). Each is
written to a CSV and split as `tfp-realnvp train --dataset csv:PATH` splits it (a seeded
shuffle, 20% test; of the training rows the recipe's validation fraction validates), and in one
run, on the same rows (test NLL, nats per row, lower is better):

- **tfp_realnvp**: `fit_flow(TrainingConfig.for_dataset("csv:PATH"))`, the recipe the command
  line builds, adapted to the table (`tfp_realnvp.table_recipe`), nothing changed;
- **Gaussian**: the maximum-likelihood full-covariance Gaussian of the fitted rows;
- **GMM**: `sklearn.mixture.GaussianMixture` (full covariances, `n_init=3`), 1..10 components,
  the count with the lowest validation NLL kept;
- **zuko NSF**: `zuko.flows.NSF(D)` with its defaults (3 spline transforms, 64x64 hidden), on
  rows standardised with the fitted rows' mean and deviation (its log-determinant counted), Adam
  at 1e-3, batches of 64, early stopping on the validation NLL with patience 30 (best state
  kept), at most 1000 epochs.

Usage: `python benchmarks/tables.py [--tables iris,wine,...] [--output benchmarks/TABLES.md]`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import pathlib
import tempfile
import time

import numpy as np

TABLES = ("iris", "wine", "diabetes", "breast_cancer", "digits")


def load_table(name: str) -> np.ndarray:
    from sklearn import datasets  # pylint: disable=import-outside-toplevel

    x = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    if name == "digits":  # integer pixels: dequantized once, with a fixed seed
        x = x + np.random.default_rng(0).uniform(size=x.shape)
    return x


def gaussian_test_nll(fit: np.ndarray, test: np.ndarray) -> float:
    from tfp_realnvp.bijectors.whitening import gaussian_nll  # pylint: disable=import-outside-toplevel

    return gaussian_nll(fit, test)


def gmm_test_nll(fit: np.ndarray, val: np.ndarray, test: np.ndarray) -> tuple[float, int]:
    from sklearn.mixture import GaussianMixture  # pylint: disable=import-outside-toplevel

    best = None
    for k in range(1, 11):
        if k * (fit.shape[1] + 1) > len(fit):
            break
        gmm = GaussianMixture(k, covariance_type="full", n_init=3, random_state=0).fit(fit)
        val_nll = -gmm.score(val)
        if best is None or val_nll < best[0]:
            best = (val_nll, k, -gmm.score(test))
    return best[2], best[1]


def zuko_test_nll(fit: np.ndarray, val: np.ndarray, test: np.ndarray, *, seed: int = 0) -> tuple[float, int]:
    import torch  # pylint: disable=import-outside-toplevel
    import zuko  # pylint: disable=import-outside-toplevel

    torch.manual_seed(seed)
    mean, std = fit.mean(0), fit.std(0)
    log_det = float(np.log(std).sum())

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.tensor((x - mean) / std, dtype=torch.float32)

    xf, xv, xt = tensor(fit), tensor(val), tensor(test)
    flow = zuko.flows.NSF(fit.shape[1])
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def nll(x: torch.Tensor) -> float:
        with torch.no_grad():
            return float(-flow().log_prob(x).mean()) + log_det

    best, best_state, wait, epochs = math.inf, None, 0, 0
    for epochs in range(1, 1001):
        order = torch.randperm(len(xf))
        for i in range(0, len(xf), 64):
            loss = -flow().log_prob(xf[order[i:i + 64]]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        current = nll(xv)
        if current < best:
            best, best_state, wait = current, copy.deepcopy(flow.state_dict()), 0
        else:
            wait += 1
            if wait >= 30:
                break
    flow.load_state_dict(best_state)
    return nll(xt), epochs


def run_table(name: str, directory: pathlib.Path) -> dict:
    from tfp_realnvp import TrainingConfig, fit_flow  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.table_recipe import adapt_to_table  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.data import load_dataset  # pylint: disable=import-outside-toplevel

    x = load_table(name)
    path = directory / f"{name}.csv"
    np.savetxt(path, x, delimiter=",", fmt="%.9g")
    config = TrainingConfig.for_dataset(f"csv:{path}")
    data = load_dataset(config.dataset, seed=config.seed)
    config, line = adapt_to_table(config, data)  # what fit_flow and the command line do; kept to print it
    started = time.perf_counter()
    result = fit_flow(config, data=data, verbose=0)
    seconds = time.perf_counter() - started
    n_fit = result.metrics["train"]["rows"]
    train = data.train.astype(np.float64)
    fit, val, test = train[:n_fit], train[n_fit:], data.test.astype(np.float64)
    row = {
        "table": name, "rows": len(x), "columns": x.shape[1], "fit": len(fit), "validation": len(val),
        "test": len(test), "recipe": line.removeprefix("Recipe    "),
        "flow": result.metrics["test"]["nll"], "flow_seconds": seconds, "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "gaussian": gaussian_test_nll(fit, test),
        "gaussian_validation": result.metrics.get("gaussian", {}).get("nll"),
        "flow_validation": result.metrics["validation"]["nll"],
    }
    started = time.perf_counter()
    row["gmm"], row["gmm_components"] = gmm_test_nll(fit, val, test)
    row["gmm_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    row["zuko"], row["zuko_epochs"] = zuko_test_nll(fit, val, test)
    row["zuko_seconds"] = time.perf_counter() - started
    print(row, flush=True)
    return row


def verdicts(row: dict) -> list[str]:
    out = ["Gaussian: " + ("met" if row["flow"] <= row["gaussian"] else "**missed**")]
    if row["rows"] >= 400:
        out.append("GMM: " + ("met" if row["flow"] < row["gmm"] else "**missed**"))
    out.append("zuko: " + ("met" if row["flow"] < row["zuko"] else "**missed**"))
    return out


def write_markdown(rows: list[dict], path: pathlib.Path, seconds: float) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Your own table: the csv defaults against a Gaussian, a Gaussian mixture and zuko",
        "",
        f"`python benchmarks/tables.py`, {datetime.date.today().isoformat()}, {seconds:.0f} s on 2 CPU cores shared "
        f"with other jobs (load average {load:.1f} at the end; the seconds are noisy, the NLLs are not).",
        "Test NLL in nats per row (lower is better), every model fitted on the same rows; targets: never worse "
        "than the Gaussian, better than the best GMM from 400 rows, better than zuko's NSF.",
        "",
        "| table | rows x columns | fit / validation / test | tfp_realnvp (csv defaults) | Gaussian | GMM (components) "
        "| zuko NSF | Gaussian's validation NLL / flow's | epochs (best) | seconds: flow / GMM / zuko | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gv = "n/a" if r["gaussian_validation"] is None else f"{r['gaussian_validation']:.3f}"
        lines.append(
            f"| {r['table']} | {r['rows']} x {r['columns']} | {r['fit']} / {r['validation']} / {r['test']} "
            f"| {r['flow']:.3f} | {r['gaussian']:.3f} | {r['gmm']:.3f} ({r['gmm_components']}) | {r['zuko']:.3f} "
            f"| {gv} / {r['flow_validation']:.3f} | {r['epochs']} ({r['best_epoch']}) "
            f"| {r['flow_seconds']:.0f} / {r['gmm_seconds']:.0f} / {r['zuko_seconds']:.0f} "
            f"| {'; '.join(verdicts(r))} |")
    met = sum("missed" not in "".join(verdicts(r)) for r in rows)
    lines += ["", f"Targets met on {met} of {len(rows)} tables.", "", "The recipe each table got (one line, as "
              "`tfp-realnvp train` prints it):", ""]
    lines += [f"- {r['table']}: {r['recipe']}" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--output", default=str(pathlib.Path(__file__).with_name("TABLES.md")))
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.tables.split(","):
            rows.append(run_table(name, pathlib.Path(directory)))
            write_markdown(rows, pathlib.Path(args.output), time.perf_counter() - started)  # a table at a time
    print(pathlib.Path(args.output).read_text())


if __name__ == "__main__":
    main()
