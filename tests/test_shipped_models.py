"""Every shipped export under saved_models/ loads in TF's C++ loader and matches its model card."""

from __future__ import annotations

import math
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from tfp_realnvp.data import load_dataset
from tfp_realnvp.serving_check import run_signature_c, signature_specs

ROOT = pathlib.Path(__file__).resolve().parents[1] / "saved_models"
# The versions the repository ships, named: the README's main job exports new versions beside
# them (saved_models/two_moons/2, ...), which are the user's, not shipped, and have no card.
SHIPPED = ("digits/1", "digits_multiscale/1", "two_moons/1")
EXPORTS = [ROOT / name for name in SHIPPED]
# Machine-readable lines of MODEL_CARD.md, e.g. "- test_data: digits" / "- bits_per_dim: 1.234".
_FIELD = re.compile(r"^- `?(test_data|nll_nats|bits_per_dim|dequantization_seed)`?: `?([^`\s]+)`?\s*$", re.M)


def _card(export: pathlib.Path) -> dict[str, str]:
    card = export / "MODEL_CARD.md"
    assert card.exists(), f"{export} has no MODEL_CARD.md"
    return dict(_FIELD.findall(card.read_text()))


def test_the_promised_exports_are_shipped():
    missing = [name for name in SHIPPED if not (ROOT / name / "saved_model.pb").is_file()]
    assert not missing, f"shipped exports missing from saved_models/: {missing}"


@pytest.mark.parametrize("export", EXPORTS, ids=[f"{p.parent.name}/{p.name}" for p in EXPORTS])
def test_shipped_export_is_small_and_documented(export):
    size = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    assert size < 5 * 2**20, f"{export} is {size / 2**20:.1f} MiB; shipped exports stay a few MB"
    card = (export / "MODEL_CARD.md").read_text()
    for heading in ("Data", "Architecture", "Re-create"):
        assert heading in card, f"{export}/MODEL_CARD.md has no {heading!r}"
    assert "tfp-realnvp train" in card


@pytest.mark.parametrize("export", EXPORTS, ids=[f"{p.parent.name}/{p.name}" for p in EXPORTS])
def test_shipped_export_reproduces_its_card_in_the_c_loader(export):
    fields = _card(export)
    dataset = load_dataset(fields["test_data"])
    x = dataset.test.astype("float32")
    if dataset.integer_levels:
        # The card's figure is on the test images dequantized with this seeded uniform noise.
        rng = np.random.default_rng(int(fields["dequantization_seed"]))
        x = (x + rng.uniform(size=x.shape)).astype("float32")
    specs = signature_specs(export)
    assert set(specs) >= {"serving_default", "log_prob", "sample", "forward", "inverse"}
    # Rows of the dataset, shaped as the export takes them: [n, 64] for the vector model, [n, 8, 8, 1] for images.
    event_shape = specs["serving_default"]["inputs"]["x"]["shape"][1:]
    x = x.reshape(-1, *event_shape)
    log_prob = run_signature_c(export, "serving_default", {"x": x})["log_prob"]
    nll = -float(np.mean(log_prob.astype(np.float64)))
    # The card rounds to 4 decimals (at most 5e-5 off; measured: 4.1e-5), and another machine's float32
    # kernels move each row's log p by an ulp or so, which the mean over hundreds of rows averages out.
    # 1e-3 leaves margin for both, yet fails on other dequantization noise (seed 1 instead of 0 moves the
    # digits models by 6e-3 and 1.1e-2 bits/dim, measured).
    if "bits_per_dim" in fields:
        measured = nll / (math.prod(event_shape) * math.log(2.0))
        assert measured == pytest.approx(float(fields["bits_per_dim"]), abs=1e-3)
    else:
        assert nll == pytest.approx(float(fields["nll_nats"]), abs=1e-3)


def _ignored(paths: list[str]) -> dict[str, bool]:
    """Whether .gitignore's rules ignore each path (`git check-ignore --no-index`: tracked or not)."""
    repo = ROOT.parent
    result = subprocess.run(["git", "-C", str(repo), "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                            capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1: none ignored
    ignored = set(result.stdout.splitlines())
    return {path: path in ignored for path in paths}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT.parent / ".git").exists(), reason="not a git checkout")
def test_user_runs_and_exports_are_ignored_and_the_shipped_ones_are_not():
    shipped = [f"saved_models/{name}{part}" for name in SHIPPED for part in ("", "/saved_model.pb", "/MODEL_CARD.md",
                                                                              "/variables/variables.index")]
    made = ["saved_models/two_moons/2", "saved_models/two_moons/2/saved_model.pb", "saved_models/digits/17",
            "saved_models/two_moons/.tmp-auto-abc123", "saved_models/two_moons/.tmp-auto-abc123/saved_model.pb",
            "saved_models/my_data/1/saved_model.pb", "runs/two_moons-20250101-120000/model.keras"]
    ignored = _ignored([*shipped, "saved_models/README.md", *made])
    assert [p for p in shipped if ignored[p]] == [], "shipped exports that .gitignore hides"
    assert not ignored["saved_models/README.md"]
    assert [p for p in made if not ignored[p]] == [], "user runs or exports that git would show"
