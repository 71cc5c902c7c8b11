"""Crash-and-resume chaos: SIGKILL a long fan-out at seeded moments, resume, check nothing is lost.

Short form (CI, part of the default pytest run): ``pytest tests/chaos``.
Long form (200+ kill points): ``python -m tests.chaos --kills 200 --items 600 --seed 1``.
"""
