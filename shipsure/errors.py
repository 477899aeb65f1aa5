"""One error base that can explain itself in one line, caught once in the CLI.

Every error carries the exit code it maps to, so `main()` never has to guess:
2 for usage and bad input the user can fix, 3 when shipsure could not run at all
(registry unreachable, storage unreadable, auth refused).
"""

from __future__ import annotations

from shipsure.findings import ExitCode


class ShipsureError(Exception):
    """Base of every error shipsure raises on purpose.

    `str(error)` is a single line that names the offending input.
    """

    exit_code: ExitCode = ExitCode.COULD_NOT_RUN

    def __init__(self, message: str) -> None:
        # Keep messages to one line: they are printed as `shipsure: <message>`.
        super().__init__(" ".join(message.split()))


class UsageError(ShipsureError):
    """The command line itself is wrong (bad flag combination, unknown format)."""

    exit_code = ExitCode.USAGE


class BadInputError(ShipsureError):
    """An input the user handed us is malformed: a reference, a file, a manifest."""

    exit_code = ExitCode.USAGE


class InvalidReferenceError(BadInputError):
    """An image reference that docker/crane would also refuse."""


class InvalidDigestError(BadInputError):
    """A digest string that is not `algorithm:hex` of a supported algorithm."""


class ManifestError(BadInputError):
    """Bytes that do not form a manifest or index we understand."""


class UnsupportedManifestError(ManifestError):
    """A manifest we recognise but do not check (Docker schema1)."""


class CouldNotRunError(ShipsureError):
    """Something outside shipsure stopped the whole run (unreachable, unreadable)."""

    exit_code = ExitCode.COULD_NOT_RUN
