"""Tests of config loading and validation (halswarm.config)."""
