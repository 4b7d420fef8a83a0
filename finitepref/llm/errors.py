"""The error type of invalid configurations (shared by :mod:`.config` and :mod:`.settings`)."""


class ConfigError(ValueError):
    """A configuration file, override or setting is invalid; the message names the field."""
