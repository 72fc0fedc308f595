"""NFC readers: they emit `core.events.Tap`, one per card presentation."""
