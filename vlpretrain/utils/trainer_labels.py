"""Let a model class declare the label inputs transformers' ``Trainer`` waits for before it computes a loss.

transformers' ``Trainer`` takes its ``label_names`` from ``find_labels(model_class)``: every ``forward`` parameter whose
name contains "label". At evaluation it computes the loss only when *all* of them are in the batch
(``Trainer.prediction_step``), so a pretraining model with five label inputs loses ``eval_loss`` on any batch that
lacks one target, although it computes its loss from whichever targets are there. A model class of the package sets
``trainer_label_names`` (a tuple; empty = the loss needs no particular label) and :func:`install` makes the Trainer read
it: ``find_labels`` returns the declared names and ``can_return_loss`` is true for an empty declaration, so the Trainer
asks the model for its loss on every evaluation batch. Classes without the attribute keep transformers' rule.
``TrainingArguments(label_names=...)`` still wins over both.
"""

from __future__ import annotations

import sys

import transformers.utils
import transformers.utils.generic as generic

signature_label_names = generic.find_labels
_signature_can_return_loss = generic.can_return_loss


def find_labels(model_class: type) -> list[str]:
    """The class's ``trainer_label_names`` when it declares them, else transformers' signature rule."""
    declared = getattr(model_class, "trainer_label_names", None)
    return signature_label_names(model_class) if declared is None else list(declared)


def can_return_loss(model_class: type) -> bool:
    """True for a class declaring no required label (its loss comes from whichever targets a batch has)."""
    declared = getattr(model_class, "trainer_label_names", None)
    return (declared is not None and len(declared) == 0) or _signature_can_return_loss(model_class)


def install() -> None:
    """Point transformers' ``find_labels`` / ``can_return_loss`` (in ``transformers.utils`` and, once imported, in
    ``transformers.trainer``) at the versions above. Idempotent; ``import vlpretrain`` calls it."""
    modules = [transformers.utils, generic]
    if "transformers.trainer" in sys.modules:
        modules.append(sys.modules["transformers.trainer"])
    for module in modules:
        module.find_labels = find_labels
        module.can_return_loss = can_return_loss
