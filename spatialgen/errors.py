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
    """``text`` cut to at most ``limit`` characters with an ellipsis if cut: at a word boundary
    when one is near the end, else mid-word (a long path keeps most of its characters)."""
    if limit < 1:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = text.rfind(" ", 0, limit)
    if space > 0 and space >= limit - 1 - max(8, limit // 4):
        cut = text[:space]
    return cut.rstrip(" ,;:") + "\u2026"
