"""Veil: privacy-preserving computation for finance -- data usable, never visible.

Layers: ``veil.crypto`` (pure primitives), ``veil.net`` (party sessions over
in-memory or mutual-TLS gRPC transports), ``veil.protocols`` (PSI, ...),
``veil.ml`` (federated models) and ``veil.jobs`` (job files and ``veil run``).
Importing ``veil`` has no side effects.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
