"""The web app (`hubspoke ui`): the board for operators and the run inspector for engineers.

Needs the `web` extra (FastAPI, Jinja2, uvicorn): `pip install 'hubspoke[web]'`. Nothing outside
this package imports it, so `import hubspoke` stays free of them.
"""
