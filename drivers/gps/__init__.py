"""GPS receivers: they emit `edged.events.Fix`."""
