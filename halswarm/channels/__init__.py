"""Notification channels: event routing (issue #7) and the chat and webhook sinks it feeds.

The routing layer is pure (sans-IO): :mod:`halswarm.channels.expr` (the match language),
:mod:`halswarm.channels.targets` (``discord#…``, ``webhook#…``, ``slack#…``) and
:mod:`halswarm.channels.router` (which routes fire, throttling and dedup). docs/ROUTING.md
describes them. This package module imports nothing, so that importing one channel
(e.g. ``halswarm.channels.discord``) does not load the others.
"""
