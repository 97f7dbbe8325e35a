"""Code generation: a checked IR -> a standalone torch module (see emit.py)."""

from .emit import generate

__all__ = ["generate"]
