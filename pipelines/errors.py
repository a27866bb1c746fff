"""The one base class of expected errors: the user's to fix (a bad recipe, list, video, checkpoint or option).

Every such error type in pipelines/ and jobs/ subclasses `UserError`, and its message names the file (and line).
The console (jobs/console/errors.py) prints these as one line without a traceback; anything else is a bug and
keeps its traceback. This module imports nothing, so every layer can use it.
"""


class UserError(Exception):
    """An expected error; the message says what to fix and where."""
