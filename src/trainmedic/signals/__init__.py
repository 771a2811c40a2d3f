"""Per-step signals: collection and bounded history."""
