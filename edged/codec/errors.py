"""The error every payload decoder raises on what it cannot read."""

from core.errors import EdgedError


class PayloadError(EdgedError, ValueError):
    """A payload that is not one of edged's encodings, or is damaged or hostile. A
    ValueError too, so readers that caught `json.loads` errors catch this one as well."""
