"""augstream against Keras' ImageDataGenerator, tf.data and tf.data service, side by side.

    .venv/bin/python -m benchmarks.compare [--json figures.json]   # = augstream bench --compare

The harness is ``benchmarks.comparison`` (see its docstring and ``--help``). It lives in the
checkout, not in the installed package: the server and its image carry no rival's code.
"""

from __future__ import annotations

import sys

from benchmarks.comparison import main

if __name__ == "__main__":
    sys.exit(main())
