"""The central supervisor: hub, pipeline, tracker, registry, dispatcher."""
