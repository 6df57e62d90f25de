"""The README's Python examples run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert BLOCKS, "README.md has no ```python examples"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})


RESULTS = README.parent / "benchmarks" / "RESULTS.md"
# The rows of RESULTS.md's S and L tables the README quotes: training, and each eager call beside
# the tf.function + XLA figure it is held to.
SPEED_ROWS = ("train (fit, defaults)", "log_prob (eager call)", "log_prob (tf.function, jit)", "sample (eager call)",
              "sample (tf.function, jit)")


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]


def test_readme_quotes_the_speed_tables_of_results_md():
    # The README's speed figures are copied from benchmarks/RESULTS.md; a new run of
    # benchmarks/speed.py that is not copied over fails here instead of going stale.
    quoted = [line for line in _section(README.read_text(), "Speed").splitlines() if line.startswith("|")]
    results = RESULTS.read_text()
    assert quoted, "README.md's Speed section quotes no table"
    for config in ("S", "L"):
        table = [line for line in _section(results, f"{config}:").splitlines() if line.startswith("| ")]
        rows = [line for line in table if line.startswith(tuple(f"| {name} |" for name in SPEED_ROWS))]
        assert len(rows) == len(SPEED_ROWS), f"RESULTS.md's {config} table lacks rows: {table}"
        # The serving latencies: TensorFlow's C++ loader against the Python model.
        rows += [line for line in table if line.startswith(("| batch 1, ", "| batch 4096, "))]
        assert len(rows) == len(SPEED_ROWS) + 3, f"RESULTS.md's {config} section has no serving table: {table}"
        missing = [row for row in rows if f"| {config} |" + row[1:] not in quoted]
        assert not missing, f"README.md does not quote these {config} rows of RESULTS.md: {missing}"


def _assert_quoted(section: str, benchmark: pathlib.Path, *, min_rows: int, verdict: str | None = None) -> None:
    """README.md's `section` quotes every table row of `benchmark` (and its line starting `verdict`)."""
    lines = benchmark.read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    assert len(rows) >= min_rows, f"{benchmark.name} has no table of {min_rows} rows: {rows}"
    if verdict is not None:
        verdicts = [line for line in lines if line.startswith(verdict)]
        assert verdicts, f"{benchmark.name} has no verdict line starting {verdict!r}"
        rows.append(verdicts[0])
    quoted = _section(README.read_text(), section).splitlines()
    missing = [line for line in rows if line not in quoted]
    assert not missing, f"README.md's {section!r} section does not quote these lines of {benchmark.name}: {missing}"


QUALITY = README.parent / "benchmarks" / "QUALITY.md"


def test_readme_quotes_the_quality_table_of_quality_md():
    # Likewise for benchmarks/two_moons_quality.py: the README's two-moons rows and verdict
    # must be those of its last run.
    _assert_quoted("Quality", QUALITY, min_rows=3, verdict="Mean ")  # header and two seeds at least


DIGITS = README.parent / "benchmarks" / "DIGITS.md"


def test_readme_quotes_the_digits_table_of_digits_md():
    # Likewise for benchmarks/digits_quality.py: the image section's table and verdict are its last run's.
    _assert_quoted("Images: Real NVP's multi-scale architecture", DIGITS, min_rows=6,  # header and five models
                   verdict="Image model ")


CONDITIONAL = README.parent / "benchmarks" / "CONDITIONAL.md"


def test_readme_quotes_the_table_of_conditional_md():
    # benchmarks/conditional.py's last run: the README's rows must be its rows.
    # The reading of the table is the benchmark's too: its figures went stale once (4.57 nats quoted
    # after a run gave 3.25).
    _assert_quoted("Conditional densities", CONDITIONAL, min_rows=3, verdict="Measured: ")  # header, two datasets
    for figure in ("conditional_two_moons.png", "conditional_digits.png"):
        assert (README.parent / "benchmarks" / figure).stat().st_size > 10_000, figure


def _serve(loaded, request: dict) -> dict:
    """TF Serving's REST `:predict` answer to `request` from a loaded SavedModel.

    The row format stacks `instances` (a single-input signature's bare rows, else dicts of named
    inputs) and answers a value, or a dict of outputs, per example; the columnar format passes
    `inputs` whole and answers the output, or a dict of outputs.
    """
    import tensorflow as tf

    function = loaded.signatures[request.get("signature_name", "serving_default")]
    specs = function.structured_input_signature[1]
    if "instances" in request:
        rows = [row if isinstance(row, dict) else {next(iter(specs)): row} for row in request["instances"]]
        inputs = {name: [row[name] for row in rows] for name in specs}
    else:
        inputs = request["inputs"] if isinstance(request["inputs"], dict) else {next(iter(specs)): request["inputs"]}
    out = {k: v.numpy().tolist() for k, v in function(**{
        k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}).items()}
    if "instances" not in request:
        return {"outputs": next(iter(out.values())) if len(out) == 1 else out}
    if len(out) == 1:
        return {"predictions": next(iter(out.values()))}
    return {"predictions": [{k: v[i] for k, v in out.items()} for i in range(len(next(iter(out.values()))))]}


def test_readme_serving_answers_are_the_shipped_models():
    # The answers were "illustrative" and far from real (log_prob -0.314 shown where the shipped
    # model answers -12.827): each request of the serving section now goes to the shipped export.
    import json

    import numpy as np
    import tensorflow as tf

    section = README.read_text().split("Every request below is a `:predict` call", 1)[1]
    section = section.split("### A conditional model", 1)[0]  # no conditional model is shipped
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.S)]
    assert len(blocks) == 18, "the section's requests and answers, in pairs"
    loaded = tf.saved_model.load(str(README.parent / "saved_models" / "two_moons" / "1"))
    for request, shown in zip(blocks[::2], blocks[1::2]):
        actual = _serve(loaded, request)
        assert _structure(shown) == _structure(actual), (request, actual)  # the same keys and nesting
        # Rounded to 3 decimals in the README (5e-4), float32 on another machine's kernels (~1e-5).
        np.testing.assert_allclose(_numbers(shown), _numbers(actual), atol=1e-3, err_msg=json.dumps(request))


def _structure(answer):
    """A JSON answer with every number replaced by None: its keys and nesting."""
    if isinstance(answer, dict):
        return {key: _structure(value) for key, value in answer.items()}
    if isinstance(answer, list):
        return [_structure(item) for item in answer]
    return None


def _numbers(answer) -> list[float]:
    """The numbers of a JSON answer in a fixed order (dicts by key)."""
    if isinstance(answer, dict):
        return [x for key in sorted(answer) for x in _numbers(answer[key])]
    if isinstance(answer, list):
        return [x for item in answer for x in _numbers(item)]
    return [float(answer)]


EXPORT = README.parent / "benchmarks" / "EXPORT.md"


def test_readme_quotes_the_table_of_export_md():
    # benchmarks/export_runtimes.py's last run: the ONNX and LiteRT section's speed and agreement rows.
    _assert_quoted("ONNX and LiteRT", EXPORT, min_rows=4)  # header and three runtimes of one model at least


TABLES = README.parent / "benchmarks" / "TABLES.md"


def test_readme_quotes_the_table_of_tables_md():
    # benchmarks/tables.py's last run: the "Your own data" section quotes its rows and its verdict.
    _assert_quoted("Your own data", TABLES, min_rows=6, verdict="Targets met on ")  # header and the five tables


SPLINE = ("Spline couplings and learned mixing", README.parent / "benchmarks")


def test_readme_quotes_the_spline_benchmarks():
    # benchmarks/spline_choice.py, spline_quality.py and spline_speed.py: the section quotes their last runs.
    section, folder = SPLINE
    _assert_quoted(section, folder / "SPLINE_CHOICE.md", min_rows=8)  # header and six measurements at least
    _assert_quoted(section, folder / "SPLINE.md", min_rows=6)  # two tables of a header and two flows at least
    _assert_quoted(section, folder / "SPLINE_SPEED.md", min_rows=3, verdict="Training against zuko")  # S and L


SHARDED_MEMORY = README.parent / "benchmarks" / "SHARDED_MEMORY.md"


def test_readme_quotes_the_sharded_memory_benchmark():
    # benchmarks/sharded_memory.py's last run: the command line section quotes its table and its sentence.
    _assert_quoted("The command line", SHARDED_MEMORY, min_rows=4, verdict="**In one sentence:**")
