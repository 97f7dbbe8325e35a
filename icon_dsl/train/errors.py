"""Errors raised for mistakes in what the user handed to ``icon-dsl train``."""


class DataError(ValueError):
    """The user's data is unusable; the message names the culprit (file, column, row, shape).

    It subclasses ValueError so that generic callers can still catch it, while the command
    line can catch it specifically and print the message without a traceback.
    """
