"""Errors raised for mistakes in what the user handed to ``icon-dsl train``."""


class DataError(ValueError):
    """The user's data is unusable; the message names the culprit (file, column, row, shape).

    It subclasses ValueError so that generic callers can still catch it, while the command
    line can catch it specifically and print the message without a traceback.
    """


class TrainError(ValueError):
    """A training request that cannot be carried out as asked: a required hyperparameter not
    given, an unknown one, a spec whose batches cannot be built (a table mapper asked to embed
    new points, a loss that rejects the first batch), a checkpoint that does not match the run.

    Like DataError, the command line prints its message without a traceback and exits 1.
    """
