"""Checks that a SavedModel export serves: TensorFlow's C++ loader and `saved_model_cli`.

TF Serving loads a SavedModel with TensorFlow's C++ SavedModel loader, restoring the variables
into a graph session and resolving each signature to graph tensors (`serving_default_x:0`).
No TF Serving binary is available here, but the TensorFlow wheel ships the C API of that very
loader (`TF_LoadSessionFromSavedModel`), so this module compiles a small C program against it,
`run_signature.c`, and runs signatures through it in a subprocess. A model that loads with
`tf.saved_model.load` can still fail there: a `tf.Module` wrapping a Keras 3 model, saved with
`tf.saved_model.save`, fails at run time with "Could not find variable", while
`keras.export.ExportArchive` exports serve.

How names are resolved: the C program reads the signature's inputs and outputs from the
`signature_def` map of the MetaGraphDef that the loader itself returns, as a model server does,
so callers speak in signature keys (`x`, `log_prob`), never in graph tensor names.

The module reads exports only: it imports no other `tfp_realnvp` module, no TensorFlow
Probability, and TensorFlow only inside the functions that parse protos or run
`saved_model_cli`.

Example:
    >>> binary = compile_loader()  # doctest: +SKIP
    >>> run_signature_c("export/1", "serving_default",
    ...                 {"x": np.zeros((2, 3), np.float32)})  # doctest: +SKIP
    {'y': array([[0., 0.], [0., 0.]], dtype=float32)}
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "SERVE_TAG",
    "compile_loader",
    "graph_op_types",
    "run_saved_model_cli",
    "run_signature_c",
    "signature_specs",
    "time_signature_c",
]

SERVE_TAG = "serve"
"""The MetaGraphDef tag TF Serving loads, and the only one these checks use."""

_SOURCE = pathlib.Path(__file__).with_name("run_signature.c")
_BINARY_STEM = "run_signature"
_TF_LIBRARIES = ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2")
_CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra")
# The dtypes run_signature.c reads and writes; a request in any other dtype is rejected here.
_DTYPES = {np.dtype(name): name for name in ("float32", "float64", "int32", "int64", "bool")}
_ERROR_PREFIX = "run_signature: error: "
# The signature_def entry TF 2 writes for its initializer; not a servable signature
# (`tf.saved_model.load(...).signatures` leaves it out too).
_INIT_OP_SIGNATURE = "__saved_model_init_op"


def _tensorflow_dir() -> pathlib.Path:
    """The installed `tensorflow` package directory, found without importing TensorFlow.

    `tf.sysconfig.get_include()` is `<this>/include` and `tf.sysconfig.get_lib()` is `<this>`;
    locating the package by its spec saves the seconds an import takes.
    """
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or spec.origin is None:
        raise RuntimeError("TensorFlow is not installed: cannot build the C SavedModel loader")
    return pathlib.Path(spec.origin).parent


def _default_build_dir() -> pathlib.Path:
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache) / "tfp_realnvp" / "serving_check"


def compile_loader(build_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Compiles `run_signature.c` against the installed TensorFlow wheel's C API, once.

    The binary links the wheel's `libtensorflow_cc.so.2` and `libtensorflow_framework.so.2`
    with an rpath to their directory, so it runs without `LD_LIBRARY_PATH`. It is cached in
    `build_dir` under a name keyed by a hash of the C source, the compile command and the
    TensorFlow libraries' size and modification time, so a new TensorFlow or a changed source
    rebuilds it. The compiler is `$CC`, defaulting to `gcc`.

    Args:
        build_dir: Where to cache the binary. Defaults to
            `$XDG_CACHE_HOME/tfp_realnvp/serving_check` (`~/.cache/...`).

    Returns:
        The path of the executable.

    Raises:
        RuntimeError: If TensorFlow, its C headers or libraries, or the compiler are missing, or
            compilation fails (the message carries the compiler's output).
    """
    tf_dir = _tensorflow_dir()
    include_dir = tf_dir / "include"
    if not (include_dir / "tensorflow" / "c" / "c_api.h").is_file():
        raise RuntimeError(
            f"TensorFlow's C API header tensorflow/c/c_api.h is missing from {include_dir}"
        )
    libraries = [tf_dir / name for name in _TF_LIBRARIES]
    for library in libraries:
        if not library.is_file():
            raise RuntimeError(f"TensorFlow's C library {library.name} is missing from {tf_dir}")
    compiler = os.environ.get("CC") or "gcc"
    compiler_path = shutil.which(compiler)
    if compiler_path is None:
        raise RuntimeError(
            f"C compiler {compiler!r} not found on PATH: it is needed to build the C SavedModel "
            "loader (set $CC to choose another)"
        )
    source = _SOURCE.read_bytes()
    link = [f"-L{tf_dir}", *(f"-l:{name}" for name in _TF_LIBRARIES), f"-Wl,-rpath,{tf_dir}"]
    key = hashlib.sha256(source)
    for part in (compiler_path, *_CFLAGS, str(include_dir), *link):
        key.update(part.encode() + b"\0")
    for library in libraries:
        stat = library.stat()
        key.update(f"{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    directory = pathlib.Path(build_dir) if build_dir is not None else _default_build_dir()
    binary = directory / f"{_BINARY_STEM}-{key.hexdigest()[:16]}"
    if os.access(binary, os.X_OK):
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    # Compile to a private name, then rename: concurrent builds never see half a binary.
    fd, partial = tempfile.mkstemp(prefix=f".{binary.name}.", dir=directory)
    os.close(fd)
    command = [compiler_path, *_CFLAGS, f"-I{include_dir}", str(_SOURCE), "-o", partial, *link]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"compiling {_SOURCE.name} failed (exit status {result.returncode}):\n"
                f"{' '.join(command)}\n{result.stderr.strip()}"
            )
        os.chmod(partial, 0o755)
        os.replace(partial, binary)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return binary


def _check_key(key: str, what: str) -> None:
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"{what} {key!r} must be non-empty and contain no whitespace")


def _format_request(inputs: Mapping[str, Any], output_keys: Sequence[str] | None) -> str:
    lines = []
    for key, value in inputs.items():
        _check_key(key, "input key")
        array = np.asarray(value)
        dtype = _DTYPES.get(array.dtype)
        if dtype is None:
            expected = ", ".join(_DTYPES.values())
            raise ValueError(f"input {key!r} has dtype {array.dtype}, expected one of {expected}")
        if array.dtype.kind == "f":
            # repr of a Python float is the shortest string that reads back bit-exactly; a
            # float32 widened to float64 is exact, so strtod + the C cast give it back.
            values = map(repr, array.astype(np.float64).ravel().tolist())
        else:
            values = map(str, array.astype(np.int64).ravel().tolist())
        header = " ".join(["input", key, dtype, str(array.ndim), *map(str, array.shape)])
        lines += [header, " ".join(values)]
    for key in output_keys or ():
        _check_key(key, "output key")
        lines.append(f"output {key}")
    return "\n".join(lines) + "\n"


def _parse_response(text: str) -> dict[str, np.ndarray]:
    tokens = text.split()
    outputs: dict[str, np.ndarray] = {}
    i = 0
    while i < len(tokens):
        if tokens[i] != "output" or i + 3 >= len(tokens):
            raise RuntimeError(f"C SavedModel loader: malformed response near token {i}: {text!r}")
        key, dtype, ndim = tokens[i + 1], np.dtype(tokens[i + 2]), int(tokens[i + 3])
        shape = tuple(int(d) for d in tokens[i + 4 : i + 4 + ndim])
        i += 4 + ndim
        count = int(np.prod(shape, dtype=np.int64))
        values = tokens[i : i + count]
        if len(values) != count:
            raise RuntimeError(f"C SavedModel loader: output {key!r} is truncated")
        i += count
        if dtype.kind == "f":
            # Printed with %.17g from the (widened) value: float64 parsing is exact.
            array = np.array(values, dtype=np.float64).astype(dtype)
        else:
            array = np.array(values, dtype=np.int64).astype(dtype)
        outputs[key] = array.reshape(shape)
    return outputs


def run_signature_c(
    export_dir: str | os.PathLike[str],
    signature_key: str,
    inputs: Mapping[str, Any],
    *,
    output_keys: Sequence[str] | None = None,
    build_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """Runs one signature through TensorFlow's C++ SavedModel loader (the one TF Serving uses).

    Loads `export_dir` with `TF_LoadSessionFromSavedModel` and tag `serve` in a subprocess,
    feeds `inputs` to the signature's input tensors and fetches its outputs with
    `TF_SessionRun`. Values cross the process boundary as text that reads back bit-exactly.
    Inputs are not cast: each dtype must be the signature's (a Python int is int64, so pass
    `np.int32(5)` for an int32 input).

    Args:
        export_dir: The SavedModel directory.
        signature_key: The signature to run, e.g. `"serving_default"`.
        inputs: Every input of the signature, by key, as arrays (or scalars) of dtype float32,
            float64, int32, int64 or bool.
        output_keys: The outputs to fetch. Defaults to all of the signature's outputs.
        build_dir: Passed to `compile_loader`.

    Returns:
        The outputs by key, with the dtypes and shapes the graph produced.

    Raises:
        ValueError: If an input's dtype is unsupported or a key contains whitespace.
        RuntimeError: If loading, resolving the signature (unknown signature, input or output
            key, wrong dtype, missing operation) or running fails; the message is the loader's.
    """
    outputs, _ = _run_loader(export_dir, signature_key, inputs, output_keys, build_dir, repeats=0)
    return outputs


def time_signature_c(
    export_dir: str | os.PathLike[str],
    signature_key: str,
    inputs: Mapping[str, Any],
    *,
    repeats: int = 1000,
    build_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Times one signature in TensorFlow's C++ SavedModel loader: `repeats` calls after a first.

    The export is loaded once, run once (warm-up), then `TF_SessionRun` is timed call by call
    with the same inputs: the latency TF Serving's own runtime gives, without its RPC layer.

    Args:
        export_dir: The SavedModel directory.
        signature_key: The signature to run.
        inputs: Every input of the signature, by key (as in `run_signature_c`).
        repeats: How many timed calls. Defaults to 1000.
        build_dir: Passed to `compile_loader`.

    Returns:
        The duration of each call in seconds, shape `[repeats]`.

    Raises:
        ValueError: If `repeats` is not a positive integer, or as `run_signature_c`.
        RuntimeError: As `run_signature_c`.
    """
    # Not tfp_realnvp.checks: this module imports no other tfp_realnvp module (see its docstring).
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    _, timings = _run_loader(export_dir, signature_key, inputs, None, build_dir, repeats=repeats)
    return timings


def _run_loader(export_dir: Any, signature_key: str, inputs: Mapping[str, Any], output_keys: Sequence[str] | None,
                build_dir: Any, *, repeats: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    request = _format_request(inputs, output_keys)
    _check_key(signature_key, "signature key")
    binary = compile_loader(build_dir)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's info logs out of stderr
    result = subprocess.run(
        [str(binary), os.fspath(export_dir), signature_key, *([str(repeats)] if repeats else [])],
        input=request,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        start = result.stderr.find(_ERROR_PREFIX)
        if start >= 0:
            message = result.stderr[start + len(_ERROR_PREFIX) :].strip()
        else:  # crashed before reporting, e.g. killed by a signal
            message = f"exit status {result.returncode}: {result.stderr.strip()[-4000:]}"
        raise RuntimeError(f"C SavedModel loader: {message}")
    text, timings = result.stdout, None
    if repeats:
        text, _, record = text.rpartition("timings ")
        count, _, values = record.partition("\n")
        timings = np.array(values.split(), dtype=np.int64) / 1e9
        if len(timings) != int(count):
            raise RuntimeError(f"C SavedModel loader: {len(timings)} timings for {count} repeats")
    return _parse_response(text), timings


def _serve_meta_graph(export_dir: str | os.PathLike[str]):
    """The MetaGraphDef tagged `serve` in `export_dir/saved_model.pb`."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = pathlib.Path(export_dir) / "saved_model.pb"
    if not path.is_file():
        raise FileNotFoundError(f"no SavedModel at {export_dir}: {path} does not exist")
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError
        raise ValueError(f"{path} is not a SavedModel protobuf: {error}") from error
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    tag_sets = [list(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(
        f"{path} has no MetaGraphDef tagged {SERVE_TAG!r}; its tag sets are {tag_sets}"
    )


def _tensor_spec(info) -> dict[str, Any]:
    import tensorflow as tf

    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return {"name": info.name, "dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": shape}


def signature_specs(export_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The signatures of the `serve` MetaGraphDef, as the C++ loader will see them.

    Args:
        export_dir: The SavedModel directory.

    Returns:
        `{signature_key: {"method_name": str, "inputs": {key: spec}, "outputs": {key: spec}}}`
        where each spec is `{"name": graph tensor name, "dtype": e.g. "float32",
        "shape": tuple with -1 for unknown dims, or None for unknown rank}`. TF 2's
        `__saved_model_init_op` entry is left out.

    Raises:
        FileNotFoundError: If `export_dir/saved_model.pb` does not exist.
        ValueError: If it does not parse or has no MetaGraphDef tagged `serve`.
    """
    meta_graph = _serve_meta_graph(export_dir)
    return {
        key: {
            "method_name": signature.method_name,
            "inputs": {k: _tensor_spec(v) for k, v in sorted(signature.inputs.items())},
            "outputs": {k: _tensor_spec(v) for k, v in sorted(signature.outputs.items())},
        }
        for key, signature in sorted(meta_graph.signature_def.items())
        if key != _INIT_OP_SIGNATURE
    }


def graph_op_types(export_dir: str | os.PathLike[str]) -> set[str]:
    """Every op type in the `serve` graph, function library included.

    A model server cannot run Python: `PyFunc`, `EagerPyFunc` or `PyFuncStateless` here mean the
    export will not serve.

    Raises:
        FileNotFoundError: If `export_dir/saved_model.pb` does not exist.
        ValueError: If it does not parse or has no MetaGraphDef tagged `serve`.
    """
    graph = _serve_meta_graph(export_dir).graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def _saved_model_cli(*args: str) -> subprocess.CompletedProcess[str]:
    # The module of the `saved_model_cli` script, run by this interpreter so that it is this
    # TensorFlow whatever PATH says.
    command = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        stderr = result.stderr.strip()
        # The last exception of the traceback: "...Error: message", possibly over several lines.
        matches = list(re.finditer(r"^[\w.]*(?:Error|Exception)\b.*$", stderr, re.MULTILINE))
        message = stderr[matches[-1].start() :] if matches else stderr[-4000:]
        raise RuntimeError(f"saved_model_cli {args[0]} failed: {message}")
    return result


def run_saved_model_cli(
    export_dir: str | os.PathLike[str],
    signature_key: str,
    inputs: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Runs one signature with `saved_model_cli run --tag_set serve`.

    `saved_model_cli` loads the export with the TF 1 session loader (`tf.compat.v1` graph and
    restore ops), the Python route to the same graph the C++ loader serves. Inputs go in as
    `.npy` files and outputs come back from the `.npy` files `--outdir` receives. Unlike
    `run_signature_c`, `session.run` casts inputs to the signature's dtypes.

    Args:
        export_dir: The SavedModel directory.
        signature_key: The signature to run.
        inputs: The signature's inputs by key, as arrays or scalars.

    Returns:
        Every output of the signature, by key, in key order.

    Raises:
        ValueError: If an input key holds a character `--inputs` cannot carry (`=;[]`, space).
        RuntimeError: If `saved_model_cli` fails; the message is its last exception.
    """
    with tempfile.TemporaryDirectory(prefix="saved_model_cli_") as tmp:
        specs = []
        for i, (key, value) in enumerate(inputs.items()):
            if not key or re.search(r"[=;\[\]\s]", key):
                raise ValueError(f"input key {key!r} cannot be passed to saved_model_cli --inputs")
            path = os.path.join(tmp, f"input_{i}.npy")
            np.save(path, np.asarray(value))
            specs.append(f"{key}={path}")
        outdir = os.path.join(tmp, "outputs")
        _saved_model_cli(
            "run",
            "--dir", os.fspath(export_dir),
            "--tag_set", SERVE_TAG,
            "--signature_def", signature_key,
            "--inputs", ";".join(specs),
            "--outdir", outdir,
        )  # fmt: skip
        return {
            path.stem: np.load(path) for path in sorted(pathlib.Path(outdir).glob("*.npy"))
        }
