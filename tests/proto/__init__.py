"""Tests of the sans-IO wire protocol (halswarm.proto)."""
