"""The signatures as plain TensorFlow graphs that ONNX and LiteRT converters translate correctly.

The SavedModel's signatures call TFP as it is; two converters mistranslate what TFP emits
(TensorFlow 2.21, tf2onnx 1.17, measured on the shipped models):

- TFP's base density (`tfd.Sample(tfd.Normal)`) computes its batch shape with `BroadcastArgs`,
  which tf2onnx cannot convert. Here the standard normal base is written out,
  `log p_base(z) = -|z|^2 / 2 - (d / 2) log(2 pi)` over the `d` entries of the event: sums
  and squares, which every runtime has. A builder whose base is not a standard normal over the
  event keeps TFP's `log_prob` (`base_is_standard_normal` decides, numerically).
- TFP reduces a constant log-determinant (a vector `tfb.Scale`'s `-sum log|scale|`, ActNorm's)
  as `sum(fill(slice(shape(x)), 1) * ldj)`. TF's LiteRT converter folds that with the batch size
  unknown and keeps only the first element of `ldj` (the shipped digits model answered 11.0
  nats low). The graph is therefore frozen (variables and captured tensors become constants) and
  run through Grappler's constant folding and arithmetic simplification, TensorFlow's own graph
  optimizer, before any converter sees it; the folded graph converts correctly.
- tf2onnx has no `Log1p` (the logit preprocessing's `log1p(-v)`): `rewrite_log1p` replaces
  each by `log(1 + v)`, exact to float32 rounding here (`1 - v` is exact for `v` in `[1/2, 1)`
  by Sterbenz's lemma, and within an ulp of 1 below).

Every signature is built from the model's own bijector, so any registered flow (and any
preprocessing bijector) takes this path unchanged; what a converter still cannot hold is
reported by the converter, and what it mistranslates is caught by `equivalence.check_artifact`.

```none
log_prob:          x [n, *E] (, context [n, C])  -> log_prob [n]
forward:           z [n, *E] (, context)         -> x [n, *E]
inverse:           x [n, *E] (, context)         -> z [n, *E], log_det_jacobian [n]
log_prob_integer:  x [n, *E] (, context)         -> log_prob [n]   (integer models only)
                   = log (1/K) sum_k p(x + u_k),  u_k ~ U[0, 1)^E fixed at export (K, seed)
```
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_realnvp.model import FlowModel

__all__ = [
    "CONVERTIBLE_SIGNATURES",
    "INTEGER_DRAWS",
    "INTEGER_SEED",
    "FrozenSignature",
    "base_is_standard_normal",
    "convertible_signatures",
    "freeze",
    "integer_log_prob",
    "model_digest",
    "remember",
    "rewrite_log1p",
]

CONVERTIBLE_SIGNATURES: tuple[str, ...] = ("log_prob", "forward", "inverse", "log_prob_integer")
"""The signatures an ONNX or LiteRT artifact holds (`log_prob_integer` for integer models only)."""

INTEGER_DRAWS = 1
"""K, the uniform draws of `log_prob_integer` (`log mean_k p(x + u_k)`). K = 1 is the bound training
reports, so the signature answers the model's test bits/dim (tests/test_export_runtimes.py). A larger K
is a tighter bound: on 200 held-out digits the shipped model gives 2.071 bits/dim at K = 16 against
2.188 at K = 1 (measured 2026-12-06); K is not yet a parameter of the exports."""

INTEGER_SEED = 0
"""The stateless seed `[INTEGER_SEED, 0]` of `log_prob_integer`'s draws `u_k`."""

_Signature = tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec]]


def base_is_standard_normal(model: FlowModel) -> bool:
    """Whether the model's base density is `N(0, I)` over its event (checked on fixed draws)."""
    base = model.distribution.distribution
    if base.event_shape != tuple(model.event_shape) or base.batch_shape != ():
        return False
    scales = np.reshape([1.0, 0.5, 2.0], [3] + [1] * len(model.event_shape))  # near, inside, outside the bulk
    z = tf.constant(np.random.default_rng(0).normal(size=(3, *model.event_shape)) * scales, model.flow_dtype)
    expected = _standard_normal_log_prob(z, len(model.event_shape))
    try:
        got = base.log_prob(z)
    except Exception:  # noqa: BLE001  (a base that cannot even evaluate this is not N(0, I))
        return False
    return bool(np.allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5))  # float32 sums of 64 squares


def _standard_normal_log_prob(z: tf.Tensor, event_ndims: int) -> tf.Tensor:
    axes = list(range(-event_ndims, 0))
    size = int(np.prod(z.shape[-event_ndims:]))
    return -0.5 * tf.reduce_sum(tf.square(z), axis=axes) - 0.5 * size * math.log(2.0 * math.pi)


def _log_prob_fn(model: FlowModel) -> Callable[[tf.Tensor, tf.Tensor | None], tf.Tensor]:
    """`log p(x)` from the bijector's inverse and log-det and a base density that converts."""
    bijector, event_ndims = model.distribution.bijector, len(model.event_shape)
    written_out = base_is_standard_normal(model)

    def log_prob(x: tf.Tensor, context: tf.Tensor | None) -> tf.Tensor:
        kwargs = model.bijector_kwargs(tf.shape(x)[0], context=context)
        z = bijector.inverse(x, **kwargs)
        base = (_standard_normal_log_prob(z, event_ndims) if written_out
                else model.distribution.distribution.log_prob(z))
        return base + bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims, **kwargs)

    return log_prob


def integer_log_prob(model: FlowModel, x: tf.Tensor, context: tf.Tensor | None, *,
                     log_prob: Callable[[tf.Tensor, tf.Tensor | None], tf.Tensor] | None = None,
                     draws: int = INTEGER_DRAWS, seed: int = INTEGER_SEED) -> tf.Tensor:
    """`log (1/K) sum_k p(x + u_k)` per row of integer-valued `x`, the `u_k ~ U[0, 1)^E` fixed.

    An unbiased estimate of the probability of the integer cell `x + [0, 1)^E` inside the log, so
    a lower bound on `log P(x)` in expectation, tighter as `K` grows; `K = 1` is the bound the
    training reports (bits/dim). The draws are constants of the graph: the same `x` always gets
    the same answer.
    """
    event = list(model.event_shape)
    with tf.init_scope():  # drawn once, eagerly: a constant of the graph, not a random op
        u = tf.random.stateless_uniform([draws, *event], seed=[seed, 0], dtype=model.flow_dtype).numpy()
    u = tf.constant(u)
    rows = tf.shape(x)[0]
    xk = tf.reshape(x[:, tf.newaxis] + u[tf.newaxis], [-1, *event])  # [n * K, *E], row-major in k
    if context is not None:
        context = tf.broadcast_to(context, tf.stack([rows, model.context_size]))
        context = tf.reshape(tf.broadcast_to(context[:, tf.newaxis], tf.stack([rows, draws, model.context_size])),
                             [-1, model.context_size])
    if log_prob is None:
        log_prob = lambda x, context: model.log_prob(x, context=context)  # noqa: E731
    per_draw = tf.reshape(log_prob(xk, context), tf.stack([rows, draws]))
    return tf.reduce_logsumexp(per_draw, axis=1) - math.log(draws)


def integer_rows_valid(model: FlowModel, x: tf.Tensor) -> tf.Tensor:
    """Per row: every value an integer in `[0, levels - 1]`."""
    levels = model.preprocessing.integer_levels
    ok = tf.logical_and(tf.equal(x, tf.floor(x)), tf.logical_and(x >= 0, x <= levels - 1))
    return tf.reduce_all(tf.reshape(ok, tf.stack([tf.shape(x)[0], -1])), axis=1)


def convertible_signatures(model: FlowModel) -> dict[str, _Signature]:
    """The functions and input specs of `CONVERTIBLE_SIGNATURES`, as plain graphs.

    No assertions (neither ONNX nor LiteRT has them): shapes are the runtime's input specs, and an
    integer row that is not an integer in `[0, levels - 1]` gets a NaN `log_prob`.
    """
    event, dtype, size = list(model.event_shape), model.flow_dtype, model.context_size
    bijector, event_ndims = model.distribution.bijector, len(event)
    log_prob = _log_prob_fn(model)
    context_spec = [tf.TensorSpec([None, size], dtype, name="context")] if size else []

    def spec(name: str) -> list[tf.TensorSpec]:
        return [tf.TensorSpec([None, *event], dtype, name=name), *context_spec]

    def log_prob_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        return {"log_prob": log_prob(x, context)}

    def forward_of(z: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        return {"x": bijector.forward(z, **model.bijector_kwargs(tf.shape(z)[0], context=context))}

    def inverse_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        kwargs = model.bijector_kwargs(tf.shape(x)[0], context=context)
        return {"z": bijector.inverse(x, **kwargs),
                "log_det_jacobian": bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims, **kwargs)}

    def log_prob_integer_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        valid = integer_rows_valid(model, x)
        safe = tf.where(tf.reshape(valid, [-1] + [1] * event_ndims), x, tf.zeros_like(x))
        estimate = integer_log_prob(model, safe, context, log_prob=log_prob)
        # NaN for an invalid row as sqrt(valid - 1): 0 or sqrt(-1). Not tf.where: tf2onnx writes a select
        # as valid * a + (1 - valid) * b, and 0 * NaN is NaN, so every row would answer NaN.
        return {"log_prob": estimate + tf.sqrt(tf.cast(valid, dtype) - 1.0)}

    signatures = {
        "log_prob": (log_prob_of, spec("x")),
        "forward": (forward_of, spec("z")),
        "inverse": (inverse_of, spec("x")),
    }
    if model.preprocessing.integer_levels is not None:
        signatures["log_prob_integer"] = (log_prob_integer_of, spec("x"))
    return signatures


class FrozenSignature:
    """One signature as a frozen, constant-folded `GraphDef`, with its input and output names.

    Attributes:
      graph_def: The graph; each input a `Placeholder` named by its key (`x`, `context`), each
        output an `Identity` named by its key (`log_prob`).
      inputs: `{key: tf.TensorSpec}` in the signature's order.
      outputs: The output keys, sorted.
    """

    def __init__(self, function: Callable[..., dict[str, tf.Tensor]], input_signature: list[tf.TensorSpec]) -> None:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        concrete = tf.function(function, input_signature=input_signature, autograph=False).get_concrete_function()
        frozen = convert_variables_to_constants_v2(concrete)
        self.inputs = {spec.name: spec for spec in input_signature}
        self.outputs = sorted(concrete.structured_outputs)  # tf.nest flattens a dict in sorted key order
        structured = dict(zip(self.outputs, frozen.outputs))
        graph_def = frozen.graph.as_graph_def()
        # Name each output by its key, so converters and runtimes speak of `log_prob`, not `Identity_1`.
        taken = {node.name for node in graph_def.node}
        for key in self.outputs:
            if key in taken:
                raise RuntimeError(f"the graph already has a node named {key!r}")
            node = graph_def.node.add()
            node.op, node.name = "Identity", key
            node.input.append(structured[key].name.removesuffix(":0"))
            node.attr["T"].type = structured[key].dtype.as_datatype_enum
        self.graph_def = _optimize(graph_def, list(self.inputs), self.outputs)

    def concrete_function(self) -> Any:
        """The graph as a `ConcreteFunction` of its inputs, returning `{key: tensor}`."""
        graph_def = self.graph_def
        wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
        graph = wrapped.graph
        return wrapped.prune([graph.get_tensor_by_name(f"{key}:0") for key in self.inputs],
                             {key: graph.get_tensor_by_name(f"{key}:0") for key in self.outputs})


def model_digest(model: FlowModel) -> str:
    """A hash of `model`'s config and every variable's value: equal digests, equal graphs and answers."""
    digest = hashlib.sha256(repr(sorted(model.get_config().items(), key=str)).encode())
    for variable in model.variables:
        digest.update(variable.path.encode() + b"\0" + np.asarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def remember(store: collections.OrderedDict, key: Any, compute: Callable[[], Any], *, size: int = 4) -> Any:
    """`store[key]`, computed once: the `size` most recently used entries are kept."""
    if key not in store:
        store[key] = compute()
        while len(store) > size:
            store.popitem(last=False)
    store.move_to_end(key)
    return store[key]


# digest -> frozen signatures: exporting one model to both formats (or a model loaded again from its
# `.keras` file, as the command line does) freezes it once; seconds per signature.
_FROZEN: collections.OrderedDict[str, dict[str, FrozenSignature]] = collections.OrderedDict()


def freeze(model: FlowModel) -> dict[str, FrozenSignature]:
    """Every convertible signature of `model`, frozen and constant-folded, by key (cached by `model_digest`)."""
    return remember(_FROZEN, model_digest(model), lambda: {
        key: FrozenSignature(function, specs) for key, (function, specs) in convertible_signatures(model).items()})


def _optimize(graph_def: Any, inputs: list[str], outputs: list[str]) -> Any:
    """Grappler's constant folding and arithmetic simplification on a frozen graph."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
    fetch = meta_graph.collection_def["train_op"]
    for key in outputs:
        fetch.node_list.value.append(f"{key}:0")
    config = config_pb2.ConfigProto()
    rewrites = config.graph_options.rewrite_options
    rewrites.optimizers.extend(["constfold", "arithmetic", "dependency", "constfold"])
    rewrites.min_graph_nodes = -1  # optimize small graphs too
    optimized = tf_optimizer.OptimizeGraph(config, meta_graph)
    names = {node.name for node in optimized.node}
    missing = [key for key in inputs + outputs if key not in names]
    if missing:  # an input the graph does not use is pruned; converters need every one
        raise RuntimeError(f"graph optimization dropped {missing}")
    return optimized


def rewrite_log1p(graph_def: Any) -> Any:
    """A copy of `graph_def` with each `Log1p(v)` written `Log(AddV2(v, 1))` (tf2onnx lacks `Log1p`)."""
    from tensorflow.core.framework import graph_pb2

    rewritten = graph_pb2.GraphDef()
    rewritten.CopyFrom(graph_def)
    for node in list(rewritten.node):
        if node.op != "Log1p":
            continue
        dtype = node.attr["T"].type
        one = rewritten.node.add()
        one.op, one.name = "Const", f"{node.name}/one"
        one.attr["dtype"].type = dtype
        one.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, tf.dtypes.as_dtype(dtype)))
        plus = rewritten.node.add()
        plus.op, plus.name = "AddV2", f"{node.name}/one_plus"
        plus.input.extend([node.input[0], one.name])
        plus.attr["T"].type = dtype
        node.op = "Log"
        node.input[0] = plus.name
    return rewritten
