"""Exceptions the library raises for problems a user can fix."""


class ConfigError(ValueError):
    """A parameter or path given by the user is unusable; the message says which and why."""


class ImageError(ValueError):
    """One input file could not be read as a photo; the message names the file and the reason."""
