"""The research assistant: a lead plans 1 to 5 search specialists by the question's breadth;
they search a bundled corpus in parallel; their findings are compressed, synthesised (duplicates
merged, conflicts between sources resolved) and every citation is checked against its document.

Runs offline on the bundled model and a fictional corpus: ``hubspoke demo research "QUESTION"``.
"""

from hubspoke.examples.research.workflow import DEMO_INPUT, ROLES, workflow

__all__ = ["DEMO_INPUT", "ROLES", "workflow"]
