"""augstream against Keras' ImageDataGenerator, tf.data and tf.data service, side by side.

    .venv/bin/python -m benchmarks.compare [--json figures.json]   # = augstream bench --compare

The comparison lives in the package (``augstream_service.compare``) so that installed copies
can run it too; see its docstring and ``--help``.
"""

from __future__ import annotations

import sys

from augstream_service.compare import main

if __name__ == "__main__":
    sys.exit(main())
