"""Test helpers: a local OpenAI-compatible backend (see :mod:`routellm_lc.testing.backend`)."""

from routellm_lc.testing.backend import Fault, LocalBackend, ModelSettings, RecordedRequest

__all__ = ["Fault", "LocalBackend", "ModelSettings", "RecordedRequest"]
