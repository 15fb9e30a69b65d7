"""One exception tree for the whole scanner.

Exceptions are for faults, never for "denied": a pass that fails a check is a
:class:`~scanner.core.decision.Decision` with a reason code, not an exception.
Errors raised by other libraries are wrapped with ``raise ... from err`` so a
caller needs to catch only :class:`ScannerError`::

    ScannerError
     +-- MalformedError (ValueError)      bytes from outside are not well formed: too big,
     |                                    too deep, not UTF-8, duplicate keys, wrong shape
     +-- ConfigError (ValueError)         a config or gate file is wrong; names the key
     +-- KeyFileError (ValueError)        a key file is missing, malformed or unsafe
     +-- SignatureError (ValueError)      a signed document failed verification
     |    +-- UnknownKeyError             ... signed by a key that is not trusted
     +-- PolicyError (ValueError)         an event policy is invalid or not for this gate
     +-- PassFormatError (ValueError)     a pass text cannot be parsed (carries .reason)
     +-- IssueError (ValueError)          a pass cannot be issued as asked
     +-- CameraError (OSError)            no frames: device gone, file unreadable
     |    +-- CameraTimeoutError (TimeoutError) ... and no word from it: hung
     +-- DecoderError (RuntimeError)      a QR decoder is missing or failed
     +-- SignalError (RuntimeError)       the GPIO outputs cannot be driven
     +-- ScreenError (OSError)            the guard's screen cannot be opened or drawn on
     +-- ScanLogError (OSError)           the scan log cannot be written or read
     +-- ControlError (OSError)           the running daemon cannot be reached
     +-- TransferError (ValueError)       a USB export or update was refused
     +-- VenueError (OSError)             the link between gates cannot run (broker, store)
     +-- DroppedMessageError (ValueError) a message from the venue link was refused
                                          (carries .reason: oversized, forged, unknown_gate...)
"""

from __future__ import annotations


class ScannerError(Exception):
    """Root of every error this package raises on purpose."""


class MalformedError(ScannerError, ValueError):
    """Bytes from outside (a stick, an export, a QR code, a file) are not well
    formed; readers wrap it in their own error with what was being read."""


class ConfigError(ScannerError, ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class KeyFileError(ScannerError, ValueError):
    """A key file is missing, malformed, or has unsafe permissions."""


class SignatureError(ScannerError, ValueError):
    """A signed document does not verify."""


class UnknownKeyError(SignatureError):
    """A signed document is signed by a key this reader does not trust."""


class PolicyError(ScannerError, ValueError):
    """An event policy is invalid, expired, or for another event; or a gate's
    settings do not fit it (``key`` then names the gate setting at fault)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class PassFormatError(ScannerError, ValueError):
    """A pass text cannot be accepted; ``reason`` is the decision's reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class IssueError(ScannerError, ValueError):
    """A pass cannot be issued as asked (unknown tier or zone, bad serial...)."""


class CameraError(ScannerError, OSError):
    """The camera or frame source cannot deliver frames."""


class CameraTimeoutError(CameraError, TimeoutError):
    """The camera said nothing at all for too long: hung, not merely unplugged."""


class DecoderError(ScannerError, RuntimeError):
    """A QR decoder is not installed or failed on a frame."""


class SignalError(ScannerError, RuntimeError):
    """The LEDs, buzzer or door strike cannot be driven."""


class ScreenError(ScannerError, OSError):
    """The guard's screen cannot be opened or drawn on (a fault, never a stop)."""


class ScanLogError(ScannerError, OSError):
    """The scan log cannot be written or read."""


class ControlError(ScannerError, OSError):
    """The running daemon's control socket cannot be reached or refused a command."""


class TransferError(ScannerError, ValueError):
    """A USB export or import was refused; the message says why."""


class VenueError(ScannerError, OSError):
    """The link between gates cannot run: no broker address, no peer store."""


class DroppedMessageError(ScannerError, ValueError):
    """A message from the venue link was refused; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str, *, source: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        # the box that signed it, once its signature is checked (None before:
        # a name taken from the topic would be the attacker's choice)
        self.source = source
