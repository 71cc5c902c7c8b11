"""Executors: where specialists run.

An executor only runs a specialist on a work item (layer 3, beside the specialists); the foreman
is given one (`LocalExecutor` by default) and depends on the `Executor` protocol, never on an
engine.
"""

from hubspoke.executors.base import Executor
from hubspoke.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
