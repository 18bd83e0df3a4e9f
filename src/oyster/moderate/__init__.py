"""Reply moderation: every reply, and every streamed window, read as text in its own right
(harm across the taxonomy, self-harm encouragement, hate, private data), whatever the
request was; the decision only sets how strict. See `moderator.py`."""

from oyster.moderate.moderator import ModerationVerdict, Moderator, find_private_data, segments

__all__ = ["ModerationVerdict", "Moderator", "find_private_data", "segments"]
