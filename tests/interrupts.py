"""Test helper: child processes that take Ctrl-C the way a terminal's foreground job does."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """`preexec_fn` restoring SIGINT's default action in the child.

    A shell without job control starts background commands with SIGINT ignored, and children
    inherit that, so a test suite launched as `cmd &` would see its Ctrl-C tests' children shrug
    off the interrupt. Python installs its KeyboardInterrupt handler only when SIGINT is not
    ignored at start-up; resetting it before exec restores what a user's terminal gives.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
