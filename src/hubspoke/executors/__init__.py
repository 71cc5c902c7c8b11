"""Executors: where specialists run.

An executor only runs a specialist on a work item (layer 3, beside the specialists); the foreman
is given one (`LocalExecutor` by default) and depends on the `Executor` protocol, never on an
engine. `PoolExecutor` (`hubspoke.executors.pool`) runs them in worker processes on this machine;
`RayExecutor` (`hubspoke.executors.ray`, the ``ray`` extra) on a Ray cluster. Both import on
first use, and Ray only when one is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hubspoke.executors.base import Executor, Preparing, Starting
from hubspoke.executors.local import LocalExecutor

if TYPE_CHECKING:
    from hubspoke.executors.pool import PoolExecutor
    from hubspoke.executors.ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "PoolExecutor", "Preparing", "RayExecutor", "Starting"]

_LAZY = {"PoolExecutor": "hubspoke.executors.pool", "RayExecutor": "hubspoke.executors.ray"}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'hubspoke.executors' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
