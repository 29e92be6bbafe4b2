"""Serve TerraMind over HTTP: a FastAPI app, a job queue on the scene engine, and a web page."""
