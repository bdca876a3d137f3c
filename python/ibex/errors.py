"""The exceptions ibex raises. Every one is an ``IbexError`` carrying ibex's own message."""

from __future__ import annotations


class IbexError(Exception):
    """Base class of every error ibex raises."""


class IndexNotFoundError(IbexError, FileNotFoundError):
    """The path holds no ibex index (or the index was dropped)."""


class DocumentNotFoundError(IbexError, KeyError):
    """No document has the id asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidInputError(IbexError, ValueError):
    """A document, corpus line, request field or setting is invalid; the message names it."""


class ModelMismatchError(IbexError):
    """The index was built with another embedding model or dimension than the one offered."""


class IndexLockedError(IbexError):
    """Another process is writing the index (its writer lock is held)."""


class IndexClosedError(IbexError):
    """The index was closed (``Index.close``) and takes no more calls."""


__all__ = [
    "IbexError",
    "IndexNotFoundError",
    "DocumentNotFoundError",
    "InvalidInputError",
    "ModelMismatchError",
    "IndexLockedError",
    "IndexClosedError",
]
