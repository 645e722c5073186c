"""The errors the protocol itself raises: the root of augstream's exception tree.

The client's ``augstream`` package adds the rest of the tree (server refusals, lost
connections) below ``AugstreamError``; see ``augstream._exceptions``.
"""

from __future__ import annotations

__all__ = ["AugstreamError", "ProtocolError", "TruncatedError"]


class AugstreamError(Exception):
    """Base of every error augstream raises on purpose."""


class ProtocolError(AugstreamError):
    """The bytes received are not a valid frame stream."""


class TruncatedError(ProtocolError):
    """The stream stopped in the middle of a frame or before its end frame."""
