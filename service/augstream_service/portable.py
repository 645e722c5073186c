"""``portable`` numerics: the switches that pin OpenCV, numpy and OpenBLAS to their baseline
CPU code paths, and a process restart with them, since the libraries read them when they
load. Imports nothing heavy: the command line decides here, before OpenCV is loaded."""

from __future__ import annotations

import os
import sys
from typing import Literal

__all__ = ["PORTABLE_ENVIRONMENT", "NumericsMode", "restart_with", "running_mode"]

NumericsMode = Literal["native", "portable"]

#: OpenCV dispatches none of its optimised CPU paths (its names; the wheels' baseline, SSE3,
#: stays) and no IPP, numpy none of its SIMD targets above its baseline, OpenBLAS its generic
#: kernel.
PORTABLE_ENVIRONMENT = {
    "OPENCV_CPU_DISABLE": "SSE4.1,SSE4.2,POPCNT,FP16,AVX,AVX2,FMA3,AVX512F,AVX512BW,AVX512CD,"
    "AVX512DQ,AVX512VL,AVX512IFMA,AVX512VBMI,AVX512VBMI2,AVX512VNNI,AVX512BITALG,"
    "AVX512VPOPCNTDQ,AVX512-COMMON,AVX512-SKX,AVX512-CLX,AVX512-CNL,AVX512-ICL",
    # IPP dispatches on the CPU too; its switch is per thread at run time, so the variable.
    "OPENCV_IPP": "disabled",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Prescott",
}


def running_mode() -> NumericsMode:
    """``portable`` when this process started with ``PORTABLE_ENVIRONMENT``, else
    ``native``."""
    portable = all(os.environ.get(k) == v for k, v in PORTABLE_ENVIRONMENT.items())
    return "portable" if portable else "native"


def restart_with(mode: NumericsMode) -> None:
    """Start this very command again with ``mode``'s environment, unless it has it already
    (does not return when it restarts)."""
    if running_mode() == mode:
        return
    env = dict(os.environ)
    for name, value in PORTABLE_ENVIRONMENT.items():
        if mode == "portable":
            env[name] = value
        else:
            env.pop(name, None)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
