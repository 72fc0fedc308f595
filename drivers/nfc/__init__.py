"""NFC readers: they emit `edged.events.Tap`, one per card presentation."""
