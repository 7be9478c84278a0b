"""Errors a user can fix. The CLI prints their message as one line and exits with code 2."""


class UserError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class InputError(UserError, ValueError):
    """An input file or argument that cannot be used."""


class OutputError(UserError, OSError):
    """An output path that cannot be written."""


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used (bad key, bad type, bad value)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, corrupt or of the wrong kind."""


class TrainingDiverged(UserError, ArithmeticError):
    """The loss became NaN or infinite (a learning rate too high for this config, usually)."""


class DataUnavailable(UserError, RuntimeError):
    """A dataset that is neither cached nor fetchable here."""


class MissingDependency(UserError, ImportError):
    """An optional library (an extra such as ``spatialgen[mesh]``) that is not installed."""


def shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return head.rstrip(" ,;:") + "…"
