"""What a venue adapter raises on bad input: the frame or payload, what is wrong, and where."""

from __future__ import annotations


class FrameError(ValueError):
    """A WebSocket frame that cannot be turned into records; says what and where."""

    def __init__(self, reason: str, frame: bytes | str | None = None, stream: str | None = None):
        self.reason = reason
        self.stream = stream
        self.frame = frame
        where = f" on stream {stream!r}" if stream else ""
        excerpt = ""
        if frame is not None:
            text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
            excerpt = f": {text[:200]!r}" + ("…" if len(text) > 200 else "")
        super().__init__(f"{reason}{where}{excerpt}")


class UnknownStreamError(FrameError):
    """A frame or stream name of a kind this adapter does not handle."""


class PayloadError(ValueError):
    """A REST payload that does not have the documented shape."""


class VenueAPIError(Exception):
    """The venue's own error envelope where data was to come (a code and a message, in a body
    of a REST answer); each venue's ``…APIError`` is one."""


# What a venue's REST readers raise on a body that does not carry what was asked: the REST
# client turns them into a retryable RestError (marketlab.stream.rest).
UNREADABLE_BODY_ERRORS = (PayloadError, VenueAPIError)
