"""One exception type for every failure a user can cause (bad file, bad config, no camera).

The command line prints its message as a single line; nothing a user can trigger should surface
as a traceback.
"""


class PipnetError(Exception):
    """A user-facing error whose message names the file or setting at fault."""
