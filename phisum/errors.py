"""One contract for every error a user can fix: raise a UserError (or a subclass) whose one-line message names the
key, row or file and the fix. Every stage's and tool's click main is a phisum.cli.UserErrorCommand, which shows it
as one `Error: <message>` line on stderr and exits with code 1, no traceback; a notebook shows NotebookError's line.

Standard library only: phisum.notebook imports it in the platform's Python before `make setup`.
"""


class UserError(Exception):
    """An error the user can fix (a param, a file, a missing resource); its message is one line and says how."""
