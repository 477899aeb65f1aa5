"""Checks: verify images, probe a registry, scan storage. Findings out, no printing."""
