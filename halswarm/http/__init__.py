"""The supervisor's HTTP API (quart-trio on hypercorn)."""
