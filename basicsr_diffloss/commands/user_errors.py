"""A user's mistake ends a command with one line, ``<command>: error: <message>``, and exit status 1; with
``--debug`` on the command line the traceback is shown instead (for train and test, BasicSR's ``--debug`` also
names the experiment ``debug_<name>``)."""
import sys

from ..options import UserError


def exit_on_user_error(command, run, argv=None):
    """``run(argv)``; a :class:`~basicsr_diffloss.options.UserError` becomes ``SystemExit('<command>: error: ...')``
    unless ``argv`` (default: the command line) holds ``--debug``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run(argv)
    except UserError as error:
        if '--debug' in argv:
            raise
        raise SystemExit(f'{command}: error: {error}') from None
