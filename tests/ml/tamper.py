"""A party that alters one message it sends, for malformed-message tests.

``Tamper(s, tag, mutate)`` is a :class:`~veil.net.session.Session` stand-in: the
role function runs honestly, except that the first message it sends under
``tag`` (and, for SecureBoost's STEP, with ``op``) goes out as ``mutate(copy)``.
Mutations address fields by dotted paths (``features.0.counts``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from veil.codec import IntArray

Mutation = Callable[[Any], Any]


@dataclass
class _Once:
    done: bool = False


class Tamper:
    """Forward everything to ``s``; mutate the first matching message sent."""

    def __init__(
        self, s: Any, tag: str, mutate: Mutation, op: str | None = None, once: _Once | None = None
    ) -> None:
        self._s, self._tag, self._mutate, self._op = s, str(tag), mutate, op
        self._once = once or _Once()

    def send(self, to: str, tag: str, value: Any) -> None:
        match = str(tag) == self._tag and not self._once.done
        if match and self._op is not None:
            match = isinstance(value, dict) and value.get("op") == self._op
        if match:
            self._once.done = True
            value = self._mutate(copy.deepcopy(value))
        self._s.send(to, tag, value)

    def sub(self, name: str) -> Tamper:
        return Tamper(self._s.sub(name), self._tag, self._mutate, self._op, self._once)

    def with_roles(self, roles: Any) -> Tamper:
        return Tamper(self._s.with_roles(roles), self._tag, self._mutate, self._op, self._once)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def _parent(msg: Any, path: str) -> tuple[Any, Any]:
    *head, last = path.split(".")
    node = msg
    for p in head:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node, int(last) if isinstance(node, list) else last


def drop(path: str) -> Mutation:
    """Remove the field at ``path``."""

    def f(msg: Any) -> Any:
        node, key = _parent(msg, path)
        del node[key]
        return msg

    return f


def put(path: str, value: Any) -> Mutation:
    """Replace the field at ``path`` by ``value`` (a wrong type)."""

    def f(msg: Any) -> Any:
        node, key = _parent(msg, path)
        node[key] = value
        return msg

    return f


def grow(path: str, by: int = 1) -> Mutation:
    """Make the array or list at ``path`` ``by`` entries longer (copies of its first)."""

    def f(msg: Any) -> Any:
        node, key = _parent(msg, path)
        v = node[key]
        if isinstance(v, IntArray):
            node[key] = IntArray(list(v.values) + [v.values[0]] * by, v.width)
        elif isinstance(v, np.ndarray):
            node[key] = np.concatenate([v, np.repeat(v[:1], by)])
        else:
            node[key] = list(v) + [v[0]] * by
        return msg

    return f
