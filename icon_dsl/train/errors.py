"""Errors raised for mistakes in what the user handed to ``icon-dsl train``, and its notes.

The command line maps each class to an exit code (icon_dsl/cli.py, ``EXIT_CODES``): DataError
and TrainError exit 1, UsageError 2, TrainingFailed 3. All of them are ValueErrors, so a
generic caller can catch them together.
"""


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


class UsageError(TrainError):
    """An argument that cannot be used as given: a seed out of range, an unknown device, an
    output folder that is a file or cannot be written. Checked before anything is trained; the
    command line exits 2, as for any other bad usage."""


class TrainingFailed(TrainError):
    """Training started and could not go on: a loss or gradient that is not finite, memory
    exhausted, an output that could not be written. The message says where it happened and
    what to try; the command line exits 3."""


class TrainNote(UserWarning):
    """Something the user should know about a run that still goes ahead: output files that will
    be overwritten, a .csv without a label column, a metric the data is too small for. Issued
    with ``warnings.warn``; the command line prints it as ``note: ...``."""
