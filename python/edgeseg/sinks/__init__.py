"""Sinks: where processed frames go. Importing this package registers the built-in kinds."""

from edgeseg.sinks import archive  # noqa: F401 - registers archive
