"""Executors: where specialists run.

An executor only runs a specialist on a work item (layer 3, beside the specialists); the foreman
is given one (`LocalExecutor` by default) and depends on the `Executor` protocol, never on an
engine. `RayExecutor` (`hubspoke.executors.ray`, the ``ray`` extra) runs them on a Ray cluster;
it imports on first use, and Ray only when one is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hubspoke.executors.base import Executor, Preparing
from hubspoke.executors.local import LocalExecutor

if TYPE_CHECKING:
    from hubspoke.executors.ray import RayExecutor

__all__ = ["Executor", "LocalExecutor", "Preparing", "RayExecutor"]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name != "RayExecutor":
            raise AttributeError(f"module 'hubspoke.executors' has no attribute {name!r}")
        value = importlib.import_module("hubspoke.executors.ray").RayExecutor
        globals()[name] = value
        return value
