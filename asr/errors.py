"""The error of an impossible setting, with one line that names the key (`model.n_cnn must be
>= 0 (got -1)`), and `first_line` for quoting another error in such a line. A leaf module, so
that every layer can use it; `asr.schema` re-exports `ConfigError`."""


class ConfigError(ValueError):
    """An impossible configuration value; the message names the key."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (or its type's name when it has none): what a
    one-line report quotes of a library's multi-line error."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
