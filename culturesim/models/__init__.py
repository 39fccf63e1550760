"""The only code in culturesim that talks to a language model."""

from culturesim.models.base import (
    Chat,
    ChatMessage,
    Completion,
    GenerationParams,
    LanguageModel,
    ModelError,
    Prompt,
    ScoringUnsupported,
)
from culturesim.models.batcher import Batcher
from culturesim.models.cache import CachedModel
from culturesim.models.metering import MeteredModel, Usage
from culturesim.models.registry import build_model, list_backends

__all__ = [
    "Batcher",
    "CachedModel",
    "Chat",
    "ChatMessage",
    "Completion",
    "GenerationParams",
    "LanguageModel",
    "MeteredModel",
    "ModelError",
    "Prompt",
    "ScoringUnsupported",
    "Usage",
    "build_model",
    "list_backends",
]
