"""Distribution strategies by name: one process, several devices, several processes.

`TrainingConfig(distribution=...)` and `tfp-realnvp train --distribution ...` name one of
`DISTRIBUTIONS`; `strategy(name)` makes the `tf.distribute.Strategy` that `fit_flow` builds,
compiles and trains the model under:

```none
"none"          TensorFlow's default strategy: one device
"mirrored"      tf.distribute.MirroredStrategy over this machine's GPUs (or `replicas` logical
                CPUs carved out of the host, to try it without GPUs)
"multi_worker"  tf.distribute.MultiWorkerMirroredStrategy over the workers TF_CONFIG names
```

The recipe stays the same: `batch_size` is the global batch, which Keras splits across the
replicas, so one step sees the same number of rows however many replicas share it. Every
worker of a multi-worker job reads the whole data (or its stream) and keeps its share of each
batch (tf.data's `DATA` auto-shard policy, set by `examples.Examples.pipeline`): the workers then
run the same number of steps, which the collective all-reduce needs; sharding by file would
give a worker with larger files more steps than its peers.

`TF_CONFIG` is TensorFlow's: `{"cluster": {"worker": ["host:port", ...]}, "task": {"type":
"worker", "index": i}}` (a `"chief"` task may be listed too). The chief, the `"chief"` task or
else worker 0, is the one that writes (`is_chief`): the run directory, the plots, the metrics,
the export and the training backup; the others train beside it and write nothing, and, as in
Keras's multi-worker `BackupAndRestore`, restore from the chief's backup when the job is
restarted.

TensorFlow must be told about several logical CPUs, or about the cluster's collective ops,
before it runs anything; `strategy` therefore makes a process's one strategy at its first call
and returns it afterwards, and says what to do when it is called too late.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfp_realnvp import checks
from tfp_realnvp.choices import DISTRIBUTIONS
from tfp_realnvp.training import ConfigError

__all__ = [
    "DISTRIBUTIONS",
    "DistributionError",
    "is_chief",
    "is_chief_task",
    "read_tf_config",
    "strategy",
    "worker_count",
]

_made: dict[str, Any] = {}  # the process's strategy, by name, once made


class DistributionError(ConfigError):
    """A distribution that cannot be set up; the message says what was expected."""


def read_tf_config(environ: Any = None) -> dict[str, Any]:
    """The `TF_CONFIG` of a multi-worker job, checked: a cluster, and this task within it.

    Args:
      environ: The environment to read. Defaults to `os.environ`.

    Returns:
      The parsed `TF_CONFIG`.

    Raises:
      DistributionError: If it is missing, not JSON, or its task is not in its cluster.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    if not text:
        raise DistributionError(f"distribution 'multi_worker' needs the environment variable TF_CONFIG, as "
                                f"TensorFlow defines it, on every worker; expected e.g. {example}")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise DistributionError(f"TF_CONFIG is not JSON ({error}); expected e.g. {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(kind) for kind in ("worker", "chief")):
        raise DistributionError(f"TF_CONFIG names no 'worker' or 'chief' addresses in 'cluster'; expected e.g. "
                                f"{example}")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief"):
        raise DistributionError(f"TF_CONFIG's task must be {{'type': 'worker' or 'chief', 'index': i}}; "
                                f"got {task!r}")
    addresses = cluster.get(task["type"]) or []
    index = task.get("index", 0)
    if not checks.is_integer(index) or not 0 <= index < len(addresses):
        raise DistributionError(f"TF_CONFIG's task index {index!r} is not one of the {len(addresses)} "
                                f"{task['type']} address(es) of its cluster")
    return config


def is_chief_task(config: dict[str, Any]) -> bool:
    """Whether `TF_CONFIG`'s task is the job's chief: the `"chief"` task, or worker 0 when none is listed
    (TensorFlow's rule), known without TensorFlow."""
    task = config["task"]
    if task["type"] == "chief":
        return True
    return not config["cluster"].get("chief") and task.get("index", 0) == 0


def worker_count(config: dict[str, Any]) -> int:
    """The processes of the job `TF_CONFIG` describes: its chief and workers."""
    return len(config["cluster"].get("chief", [])) + len(config["cluster"].get("worker", []))


def strategy(name: str, *, replicas: int | None = None) -> Any:
    """The process's distribution strategy of `name` (one of `DISTRIBUTIONS`), made at the first call.

    Args:
      name: `"none"`, `"mirrored"` or `"multi_worker"`.
      replicas: `"mirrored"` only: mirror over the first `replicas` GPUs, or, without GPUs, over
        `replicas` logical CPUs carved out of the host's. Defaults to `None`: every GPU, or the
        one CPU.

    Returns:
      A `tf.distribute.Strategy`.

    Raises:
      DistributionError: For an unknown name, a missing or bad `TF_CONFIG`, more replicas than
        GPUs, or a second, different strategy in one process, or a strategy made after
        TensorFlow started running (it must come first: call this at the start of the program).
    """
    with checks.raising(DistributionError):
        checks.one_of("distribution", name, DISTRIBUTIONS)
        if replicas is not None:
            checks.integer("replicas", replicas, low=1)
    if replicas is not None and name != "mirrored":
        raise DistributionError(f"replicas applies to distribution 'mirrored' only; got replicas={replicas} "
                                f"with {name!r}")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        read_tf_config()
    if name in _made and replicas in (None, _made[name].num_replicas_in_sync):
        return _made[name]
    if _made:
        (made_name, made), = _made.items()
        raise DistributionError(f"this process already trains under distribution {made_name!r} with "
                                f"{made.num_replicas_in_sync} replica(s); one process holds one strategy (expected "
                                f"the same, got {name!r}" + (f" with {replicas}" if replicas else "") + ")")
    try:
        if name == "multi_worker":
            made = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            made = tf.distribute.MirroredStrategy(_mirrored_devices(tf, replicas))
    except RuntimeError as error:  # TensorFlow ran something already
        raise DistributionError(
            f"cannot set up distribution {name!r} now ({str(error).strip().splitlines()[0]}); it must be made "
            f"before TensorFlow runs anything: call tfp_realnvp.distribution.strategy({name!r}) at the start "
            "of the program") from None
    _made[name] = made
    return made


def _mirrored_devices(tf: Any, replicas: int | None) -> list[str] | None:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas is not None and replicas > len(gpus):
            raise DistributionError(f"replicas={replicas} but this machine has {len(gpus)} GPU(s); expected at "
                                    f"most {len(gpus)}")
        return None if replicas is None else [f"/gpu:{i}" for i in range(replicas)]
    if replicas is None or replicas == 1:
        return None
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    return [f"/cpu:{i}" for i in range(replicas)]


def is_chief(made: Any = None) -> bool:
    """Whether this process writes the run's files: always, but for a multi-worker job's non-chief workers."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    made = made if made is not None else tf.distribute.get_strategy()
    return bool(made.extended.should_checkpoint)
