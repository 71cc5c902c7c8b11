"""Executors: where specialists run."""

from hubspoke.executors.base import Executor
from hubspoke.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
