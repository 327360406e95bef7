"""Errors a user can fix: the CLI prints them as one line and exits non-zero."""


class LlmrecError(Exception):
    """A problem with the user's input or environment, worded so that it says what to change."""


class LlmrecWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints it as one line."""


class DataError(LlmrecError):
    """Bad input data: the message names the file and, where known, the row and column."""


def shorten(value: object, limit: int = 80) -> str:
    """``value`` as text, cut to ``limit`` characters for a message (a 20 MB field stays out of logs)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
