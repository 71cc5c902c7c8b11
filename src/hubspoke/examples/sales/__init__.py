"""The sales pipeline: discovery → qualification → contacts ×10 → drafts ×10 → review board,
then a separate sending run for each approved draft (`sending`, writing to the outbox).

Runs offline on the bundled model and fictional data: ``hubspoke demo sales``.
"""

from hubspoke.examples.sales.workflow import DEMO_INPUT, ROLES, sending, workflow

__all__ = ["DEMO_INPUT", "ROLES", "sending", "workflow"]
