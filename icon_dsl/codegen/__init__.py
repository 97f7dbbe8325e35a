"""Code generation: a checked IR -> a standalone torch module (entry: emit.py; its modules are
listed in docs/design.md, "Inside codegen")."""

from .emit import generate

__all__ = ["generate"]
