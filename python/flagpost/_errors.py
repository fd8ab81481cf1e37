"""Exceptions raised by flagpost: all derive from FlagpostError, and each
also derives from the built-in exception it resembles (NoAck is a
TimeoutError, Refused a ConnectionRefusedError, InvalidChannel and
InvalidArgument are ValueErrors), so either can be caught."""

from __future__ import annotations


class FlagpostError(Exception):
    """Base class of every error flagpost raises."""


class ConnectError(FlagpostError, OSError):
    """The broker address did not resolve, or a socket or thread could not be made."""


class NoAck(FlagpostError, TimeoutError):
    """A confirmed notification got no acknowledgement within its timeout."""


class Refused(FlagpostError, ConnectionRefusedError):
    """The broker's host answered that nothing listens on the port."""


class InvalidChannel(FlagpostError, ValueError):
    """A channel name is empty, longer than 32 bytes or has control characters."""


class InvalidArgument(FlagpostError, ValueError):
    """An argument is out of range (a negative timeout, an empty interest, ...)."""


class KeyFileError(FlagpostError):
    """A key file could not be read, is not a key, or is readable by others."""


class AuthError(FlagpostError):
    """The broker and this listener could not authenticate each other."""


class ClosedError(FlagpostError):
    """The notifier was closed."""
