"""The error of an impossible setting, with one line that names the key (`model.n_cnn must be
>= 0 (got -1)`). A leaf module, so that every layer can raise it; `asr.schema` re-exports it."""


class ConfigError(ValueError):
    """An impossible configuration value; the message names the key."""
