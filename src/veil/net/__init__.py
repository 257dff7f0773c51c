"""Channels between named parties: sessions over in-memory or mutual-TLS gRPC transports."""

from veil.codec import IntArray
from veil.net.local import run_parties
from veil.net.session import Session
from veil.net.transport import Transport

__all__ = ["IntArray", "Session", "Transport", "run_parties"]
