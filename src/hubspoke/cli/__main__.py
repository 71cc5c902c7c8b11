"""`python -m hubspoke.cli`: the same as the `hubspoke` script."""

from hubspoke.cli import main

main()
