"""Test harness: real supervisor and agents (simulated sessions) on loopback.

Used by halswarm's own tests and benchmarks; importable by anyone testing against a
halswarm deployment.
"""

from __future__ import annotations

from halswarm.testing.harness import (
    TEST_TOKEN,
    Cluster,
    agent_config,
    api_client,
    open_cluster,
    open_sim_agent,
    open_supervisor,
    supervisor_config,
    wait_until,
)
from halswarm.testing.processes import (
    Daemon,
    agent_json,
    free_port,
    start_daemon,
    stored_seqs,
    supervisor_json,
    wait_supervisor_ready,
    write_json,
)

__all__ = [
    "TEST_TOKEN",
    "Cluster",
    "Daemon",
    "agent_config",
    "agent_json",
    "api_client",
    "free_port",
    "open_cluster",
    "open_sim_agent",
    "open_supervisor",
    "start_daemon",
    "stored_seqs",
    "supervisor_config",
    "supervisor_json",
    "wait_supervisor_ready",
    "wait_until",
    "write_json",
]
