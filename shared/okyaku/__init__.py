"""Okyaku's common layer: domain services and adapters shared by every function."""

__version__ = "0.1.0"
