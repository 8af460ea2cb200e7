"""Chaos suite: real processes on loopback under injected network, process and disk faults."""
