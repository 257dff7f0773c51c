"""Test-only steps, registered in the test process by import and in the workers
through ``VEIL_STEP_MODULES=tests.jobs.fake_steps``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from veil.fileio import write_atomic_with as write_atomic
from veil.jobs import StepContext, register


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
