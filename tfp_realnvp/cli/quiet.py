"""Importing TensorFlow for the command line without its start-up log lines.

On a CPU machine `import tensorflow` and its first device query print, whatever
`TF_CPP_MIN_LOG_LEVEL` says, lines such as

```none
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
To enable the following instructions: AVX2 AVX512F ..., in other operations, rebuild TensorFlow ...
E0000 00:00:... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...
```

(absl writes them before TensorFlow applies the level). `import_tensorflow` runs the import and
the device query with the process's stderr (file descriptor 2) going to a temporary file, then
writes back every line that is not one of TensorFlow's C++ log lines, so a real error still
shows; afterwards `TF_CPP_MIN_LOG_LEVEL=2` keeps INFO and WARNING lines (the XLA service
banner) out. A user who sets `TF_CPP_MIN_LOG_LEVEL` chooses for themselves: nothing is
filtered. Only the command line does this; `import tfp_realnvp` changes no environment variable.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = [
    "LOG_LEVEL_VARIABLE",
    "TENSORFLOW_LOG_LINE",
    "import_tensorflow",
]

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
_QUIET_LEVEL = "2"  # INFO and WARNING hidden; ERROR and FATAL shown

TENSORFLOW_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"  # absl's C++ format: severity, date, time, thread, file:line]
    r"|E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit.*"  # no GPU: expected on a CPU
    r"|To enable the following instructions: .*"  # cpu_feature_guard's second line
)
"""A start-up line of TensorFlow's C++ logging: INFO and WARNING, and the CUDA probe's error
on a machine without a GPU. Any other ERROR line, and FATAL ones, stay."""


@contextlib.contextmanager
def _stderr_without_tensorflow_logs() -> Iterator[None]:
    """Captures file descriptor 2 and writes back the lines that are not TensorFlow's logs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line and not TENSORFLOW_LOG_LINE.fullmatch(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Imports TensorFlow (and lists its devices) quietly, unless the user set the log level.

    Does nothing when TensorFlow is imported already.
    """
    if "tensorflow" in sys.modules:
        return
    if os.environ.get(LOG_LEVEL_VARIABLE) is not None:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.config.list_physical_devices()
        return
    os.environ[LOG_LEVEL_VARIABLE] = _QUIET_LEVEL
    with _stderr_without_tensorflow_logs():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit"); devices stay unset up
