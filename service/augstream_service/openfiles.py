"""Room for the descriptors a server's worker processes need, within what the box allows.

The worker processes take a pipe to each worker per server thread and an announcing socket
per thread: on a 64-core box's defaults (64 threads, 16 workers) over 1,100 descriptors,
past the 1,024 a shell or a systemd service starts a process with, though their hard limit
is far higher (systemd's 524,288, Docker's 1,048,576). So the pool raises this process's
soft limit to what it needs and room for the connections and files, as far as the hard
limit allows, and refuses to start, naming its settings, when even that is too few. The
worker processes inherit the raised limit.
"""

from __future__ import annotations

import resource

__all__ = ["ensure_open_files"]

#: Descriptors kept beyond the pool's for the connections, the files read, the process's own.
SPARE = 512


def ensure_open_files(needed: int, why: str) -> None:
    """Make room for ``needed`` descriptors more than ``SPARE``; ``why`` names what needs
    them in the error when the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + SPARE
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        raise ValueError(
            f"{why} needs about {want} open files, and this process may open at most "
            f"{hard} (ulimit -Hn): raise the limit (LimitNOFILE= for a systemd service, "
            "--ulimit nofile= for docker run) or set fewer threads or processes"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
