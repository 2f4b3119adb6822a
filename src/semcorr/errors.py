"""Errors that tell the user what went wrong and how to fix it.

Every error raised for bad input derives from :class:`SemcorrError`; the entry scripts print its
message without a traceback (a deep torch stack trace helps no one fix a missing folder).
"""


class SemcorrError(Exception):
    """Base class of the user-facing errors of semcorr."""


class DatasetNotFoundError(SemcorrError):
    """A dataset folder or one of its files is missing."""


class ImageError(SemcorrError):
    """An image is unreadable, corrupt, or in a format that must be converted."""


class AnnotationError(SemcorrError):
    """An annotation is malformed: zero, NaN or out-of-image keypoints, unreadable file."""


class WeightsError(SemcorrError):
    """Pretrained weights are missing, cannot be downloaded, or do not fit the network."""


class ConfigError(SemcorrError):
    """A configuration value is invalid."""


class OutputError(SemcorrError):
    """A result file could not be written (full disk, no permission); the message says what is
    kept and how to resume."""
