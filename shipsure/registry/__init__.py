"""Talking to a registry over HTTP: the seam (interface.py), its client and auth."""
