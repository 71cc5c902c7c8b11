"""Runnable examples; `hubspoke demo NAME` runs them offline from an installed wheel."""

DEMOS = {"sales": "hubspoke.examples.sales", "research": "hubspoke.examples.research"}
