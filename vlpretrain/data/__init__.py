"""Collators and embedded datasets. :class:`DataCollatorForVisionLanguage` batches processor outputs for a plain
``transformers.Trainer``; ``collators`` holds the pretraining maskers."""

from .padding import DataCollatorForVisionLanguage

__all__ = ["DataCollatorForVisionLanguage"]
