"""shipsure: keeps a self-hosted container platform honest."""

__version__ = "0.1.0"
