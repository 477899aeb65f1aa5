"""Per-stack advisory locks with a TTL on backends teams already run."""
