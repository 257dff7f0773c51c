"""Where a party's heavy, data-parallel work runs: this machine or its own Ray cluster.

Scale-out is inside one party: each institution chooses its engine for itself
(``veil run --party P --engine ray://HOST:PORT``, or ``engine:`` of its party in the
job file); the protocol between parties and every byte on the wire stay the same.

- :class:`Engine`: the interface (HE backend, ECDH-PSI kernels, ordered maps);
- :class:`LocalEngine`: this machine (the default); ``RayEngine`` in
  :mod:`veil.engine.ray_engine` (imported only when a Ray URL is used);
- :func:`open_engine`, :func:`install`: make one from a URL, make it this process's;
- :mod:`veil.engine.partitions`: a directory of Parquet files read in partitions,
  each partition's work sent to the engine and the results streamed back in order.

Importing this package imports neither Ray nor anything that starts a thread.
"""

from veil.engine.base import Engine, LocalEngine, install, open_engine
from veil.engine.spec import EngineSpec, parse_engine
from veil.engine.window import ordered_window

__all__ = [
    "Engine",
    "EngineSpec",
    "LocalEngine",
    "install",
    "open_engine",
    "ordered_window",
    "parse_engine",
]
