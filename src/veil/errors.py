"""Errors every public entry point raises: each names the problem and the fix."""

from __future__ import annotations


class VeilError(Exception):
    """Base class of all Veil errors."""


class ConfigError(VeilError, ValueError):
    """Bad input from the user: a job file, a parameter, a data file.

    ``field`` names what is wrong (``steps[2].psi.result_to``), ``fix`` says what to do.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" -- {fix}"
        super().__init__(msg)


class NetworkError(VeilError):
    """A peer could not be reached, refused us, or sent something unusable."""


class PeerTimeout(NetworkError, TimeoutError):
    """A receive waited longer than its timeout."""


class PeerAborted(NetworkError):
    """A peer announced that it failed; the protocol cannot go on."""


class ProtocolError(VeilError):
    """A peer sent a message that breaks the protocol (wrong type, size, order)."""
