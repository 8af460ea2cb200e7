"""The node agent: outbox, link, executor and session backends."""
