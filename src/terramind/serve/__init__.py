"""Serve TerraMind over HTTP: a FastAPI app, a job queue on the scene engine, and a web page."""

TOKEN_ENV = "TERRAMIND_TOKEN"
"""Environment variable holding the bearer token when ``--token-file`` is not given."""
