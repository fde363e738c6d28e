"""Caption metrics as plain functions; ``bleu.py`` and ``cider.py`` beside this file are the evaluate scripts."""

from .scores import caption_metrics, cider_d, cider_d_scores, corpus_bleu, tokenize_caption

__all__ = ["caption_metrics", "cider_d", "cider_d_scores", "corpus_bleu", "tokenize_caption"]
