"""Test-only steps, registered in the test process by import and in the workers
through ``VEIL_STEP_MODULES=tests.jobs.fake_steps``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np

from veil.errors import ConfigError
from veil.fileio import write_atomic_with as write_atomic
from veil.jobs import StepContext, register
from veil.jobs.params import check_keys


class Tag(StrEnum):
    HELLO = "hello"
    NEVER = "never"


@register("_echo")
def echo(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every party tells every other its row count."""
    for peer in ctx.session.peers():
        ctx.session.send(peer, Tag.HELLO, {"party": ctx.party, "rows": len(ctx.frame)})
    seen = {}
    for i, peer in enumerate(ctx.session.peers()):
        msg = ctx.session.recv(peer, Tag.HELLO)
        seen[msg["party"]] = msg["rows"]
        ctx.progress((i + 1) / len(ctx.session.peers()), "hello")
    return {"rows": len(ctx.frame), "peer_rows": seen, "constant": 42}


@register("_write")
def write(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Write a file into this party's output folder."""
    write_atomic(ctx.out_dir / "partial.txt", lambda f: f.write(b"half done\n") and None)
    return {}


@register("_crash")
def crash(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The party named in ``party`` dies abruptly; the others wait for it forever."""
    if ctx.party == params["party"]:
        ctx.progress(0.5, "about to crash")
        os._exit(3)
    for peer in ctx.session.peers():
        ctx.session.recv(peer, Tag.NEVER)
    return {}


@register("_fail")
def fail(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The party named in ``party`` raises; the others wait for it."""
    if ctx.party == params["party"]:
        raise ValueError("boom: the test step failed on purpose")
    for peer in ctx.session.peers():
        ctx.session.recv(peer, Tag.NEVER)
    return {}


@register("_hang")
def hang(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every party waits for a message nobody sends (until stopped)."""
    ctx.progress(0.1, "waiting")
    for peer in ctx.session.peers():
        ctx.session.recv(peer, Tag.NEVER)
    return {}


@register("_kill9")
def kill9(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The party named in ``party`` is killed by SIGKILL; the others wait for it."""
    if ctx.party == params["party"]:
        ctx.progress(0.5, "about to be killed")
        os.kill(os.getpid(), signal.SIGKILL)
    for peer in ctx.session.peers():
        ctx.session.recv(peer, Tag.NEVER)
    return {}


@register("_logcrash")
def logcrash(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The party named in ``party`` logs an error, then a harmless line, then dies."""
    if ctx.party == params["party"]:
        print("OSError: [Errno 122] Disk quota exceeded", file=sys.stderr, flush=True)
        print("cleaning up...", file=sys.stderr, flush=True)
        os._exit(3)
    for peer in ctx.session.peers():
        ctx.session.recv(peer, Tag.NEVER)
    return {}


def _seeded_params(params: Mapping[str, Any], job: Any, field: str) -> Mapping[str, Any]:
    check_keys(params, ("seed", "n"), field)
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"{field}.seed", f"must be an integer >= 0, got {seed!r}")
    return dict(params)


@register("_seeded", validate=_seeded_params)
def seeded(ctx: StepContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """Writes numbers drawn from its seed (a stand-in for a model with a random batch order)."""
    seed = params.get("seed")
    rng = np.random.default_rng(seed)  # None: fresh from the OS, a different file each run
    draws = rng.random(int(params.get("n", 5)))
    text = repr(draws.tolist()).encode()
    write_atomic(ctx.out_dir / "draws.txt", lambda f: f.write(text) and None)
    return {"seed": seed}
