"""GPS receivers: they emit `core.events.Fix`."""
