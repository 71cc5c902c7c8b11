"""The sales pipeline: discovery → qualification → contacts ×10 → drafts ×10 → review board.

Runs offline on the bundled model and fictional data: ``hubspoke demo sales``.
"""

from hubspoke.examples.sales.workflow import DEMO_INPUT, ROLES, workflow

__all__ = ["DEMO_INPUT", "ROLES", "workflow"]
