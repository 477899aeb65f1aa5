"""Garbage collection: what a registry version's collector deletes, and a safe one."""
