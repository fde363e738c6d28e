"""Collators and embedded datasets. :class:`DataCollatorForVisionLanguage` batches processor outputs for a plain
``transformers.Trainer``; ``maskers`` holds the pretraining maskers and ``collators`` the collators composing them."""

from .padding import DataCollatorForVisionLanguage

__all__ = ["DataCollatorForVisionLanguage"]
