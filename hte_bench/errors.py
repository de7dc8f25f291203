"""The one exception type that means "the user's input is wrong": reported in one line, nothing logged."""


class ConfigError(ValueError):
    """Invalid configuration or input data; the message names the field and the allowed values."""
