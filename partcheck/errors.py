"""The project's own exceptions; adapters translate botocore errors into these at the boundary."""


class PartcheckError(Exception):
    """Base class of every error partcheck raises on purpose."""


class InvalidInput(PartcheckError):
    """Input that can never be processed: retrying will not help."""


class InvalidKey(InvalidInput):
    """An object key outside the storage layout, or one that tries to escape it."""


class InvalidImage(InvalidInput):
    """Bytes that are not a decodable, acceptable image."""


class NotFound(PartcheckError):
    """The object or queue does not exist."""


class AlreadyExists(PartcheckError):
    """S3 refused a conditional request (412): the destination is taken, or the object's ETag changed."""


class AccessDenied(PartcheckError):
    """The credentials lack a permission."""


class StorageUnavailable(PartcheckError):
    """S3 or SQS could not be reached or answered with a server error; retrying may help."""


class ModelError(PartcheckError):
    """The model file or its card is missing, mismatched or unusable."""
