"""Running a function in a forked child of the test process (multiprocessing's "fork", as a
trainer's Keras workers are started): what it returns comes back through a queue, and the
child must exit cleanly, through multiprocessing's own exit (``threading._shutdown``)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

__all__ = ["in_forked_child"]


def _run(target: Callable[..., Any], args: tuple[Any, ...], queue: Any) -> None:
    queue.put(target(*args))


def in_forked_child(target: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
    """``target(*args)`` in a forked child: its result, once the child has exited with 0."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_run, args=(target, args, queue))
    child.start()
    result = queue.get(timeout=timeout)
    child.join(timeout=timeout)
    assert child.exitcode == 0, f"the forked child exited with {child.exitcode}"
    return result
