"""A small rule-based text scene-graph parser for ERNIE-ViL's scene-graph prediction.

ERNIE-ViL parses each caption into objects, attributes (attached to objects) and relationships (between two
objects) with the SPICE scene-graph parser (Anderson et al. 2016), which runs on a dependency parse. That
parser is Java (Stanford CoreNLP) and not on PyPI. The Python options that run offline from pip are spaCy
with a model (the official English models are downloaded from outside PyPI; the copies on PyPI are uploads by
third parties) or NLTK / Stanza, whose taggers download data at run time. So this module uses rules of its
own over a small closed-class lexicon instead: determiners, numbers, prepositions (multi-word ones such as
"to the left of" and "in front of" included), copulas, conjunctions, a list of common adjectives (colours,
sizes, materials, ...) and verbs (plus any word ending in "-ing"); every other word is a noun.

Rules (the subset of SPICE's that captions mostly need):

- a noun phrase is ``[determiner | number]* adjective* noun+``; its nouns form one object (compound nouns such
  as "tennis racket" stay together) and each adjective is an attribute of it;
- ``NP is/are adjective`` adds the adjective as an attribute of that NP;
- prepositions (optionally after a verb) between two noun phrases form a relationship from the preceding
  noun phrase to the following one ("a man in a shirt" -> man / in / shirt);
- a verb (with optional preposition) relates the clause's subject -- the latest noun phrase that is not the
  object of a preposition -- to the following noun phrase ("a man in a shirt riding a horse" -> man / riding /
  horse);
- "and", commas and other punctuation separate noun phrases without a relationship.

Known limitation: attachment is by position, not meaning. A participle after a prepositional object relates
the clause subject ("a dog next to a woman holding a racket" gives dog / holding / racket), and a preposition
relates the noun phrase just before it ("riding a horse on the beach" gives horse / on / beach).

A caption with no noun phrase has no scene graph (``parse_scene_graph`` returns None): it then trains with
MLM only, and the collator counts it. The parser works on words; the collator maps them back to WordPieces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DETERMINERS = frozenset(
    "a an the this that these those some any each every another its his her their our my your no".split()
)
NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten several many few both".split())
COPULAS = frozenset("is are was were be being been".split())
CONJUNCTIONS = frozenset("and or but while as".split())
SKIPPED = frozenset("there here very what which who whom whose where when how why".split())
PREPOSITIONS = frozenset(
    "in on at of with near by under over above below behind beside besides inside outside into onto from to "
    "across along around through against toward towards among beneath underneath atop between beyond past "
    "off up down within without".split()
)
# Multi-word prepositions, longest first (matched greedily before single words).
MULTIWORD_PREPOSITIONS: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(phrase.split())
            for phrase in (
                "to the left of", "to the right of", "on the left of", "on the right of", "on top of",
                "in front of", "in the middle of", "on the side of", "at the top of", "at the bottom of",
                "next to", "close to", "left of", "right of", "in between", "out of", "on to", "in to",
            )
        ),
        key=len,
        reverse=True,
    )
)
ADJECTIVES = frozenset(
    (
        # colours
        "red green blue yellow purple cyan orange pink brown black white gray grey silver gold golden "
        "beige tan dark light bright colorful colourful "
        # sizes and shapes
        "small large big little tiny huge giant tall short long wide narrow thin thick round "
        "flat high low "
        # age, state, material, texture, quality
        "young old new empty full open closed clean dirty wet dry wooden metal plastic glass stone brick "
        "leather striped spotted plaid furry fluffy hairy shiny cloudy sunny snowy grassy sandy rocky "
        "busy crowded quiet happy sad smiling angry cute pretty beautiful ugly nice good bad hot cold warm "
        "fresh ripe sliced fried cooked baked frozen broken "
        "electric digital modern ancient adult baby male female single double several other"
    ).split()
)
# Words that are verbs although they do not end in "-ing" (third person and a few irregular forms).
VERBS = frozenset(
    (
        "holds rides wears sits stands eats runs walks plays moves grows shrinks looks has have carries flies "
        "jumps lies hangs covers contains shows watches uses throws catches swims drives pulls pushes reads talks "
        "waits leans rests lays sleeps faces fills surrounds hold ride wear sit stand eat run walk play look carry "
        "fly jump lie hang cover contain show watch use throw catch swim drive pull push read talk wait lean rest "
        "held rode wore sat stood ate ran walked played moved covered filled surrounded topped parked"
    ).split()
)
# Words ending in "-ing" that are nouns, not verbs.
ING_NOUNS = frozenset("building ceiling clothing painting ring string king wing thing something nothing evening morning".split())

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


@dataclass(frozen=True)
class SceneGraph:
    """Objects, attributes and relationships of one caption, as word indices into ``words``.

    ``objects[i]`` holds the word indices of object i's noun(s); ``attributes`` holds (object index, word
    indices) pairs; ``relations`` holds (subject object index, object object index, predicate word indices).
    """

    words: tuple[str, ...]
    objects: tuple[tuple[int, ...], ...]
    attributes: tuple[tuple[int, tuple[int, ...]], ...]
    relations: tuple[tuple[int, int, tuple[int, ...]], ...]

    def as_text(self) -> dict[str, list]:
        """The graph with words instead of indices (readable, and what the tests compare)."""

        def text(indices: Sequence[int]) -> str:
            return " ".join(self.words[index] for index in indices)

        objects = [text(indices) for indices in self.objects]
        return {
            "objects": objects,
            "attributes": [(objects[owner], text(indices)) for owner, indices in self.attributes],
            "relations": [(objects[subject], text(indices), objects[target]) for subject, target, indices in self.relations],
        }


def split_words(caption: str) -> list[str]:
    """Lower-case a caption and split it into words and single punctuation marks (like BERT's basic tokenizer)."""
    if not isinstance(caption, str):
        raise ValueError(f"caption: expected a string, got {type(caption).__name__}")
    return _WORD.findall(caption.lower())


def _tag(words: Sequence[str]) -> list[str]:
    """One coarse tag per word: DET, NUM, ADJ, NOUN, PREP, VERB, COP, SEP (separators) or SKIP."""
    tags: list[str] = []
    index = 0
    while index < len(words):
        phrase = next(
            (p for p in MULTIWORD_PREPOSITIONS if tuple(words[index : index + len(p)]) == p),
            None,
        )
        if phrase is not None:
            tags += ["PREP"] * len(phrase)
            index += len(phrase)
            continue
        word = words[index]
        if word in DETERMINERS:
            tag = "DET"
        elif word in NUMBER_WORDS or word.isdigit():
            tag = "NUM"
        elif word in COPULAS:
            tag = "COP"
        elif word in CONJUNCTIONS or not word[0].isalnum():
            tag = "SEP"
        elif word in SKIPPED:
            tag = "SKIP"
        elif word in PREPOSITIONS:
            tag = "PREP"
        elif word in ADJECTIVES:
            tag = "ADJ"
        elif word in VERBS or (word.endswith("ing") and len(word) > 4 and word not in ING_NOUNS):
            tag = "VERB"
        else:
            tag = "NOUN"
        tags.append(tag)
        index += 1
    return tags


def parse_scene_graph(words: Sequence[str]) -> SceneGraph | None:
    """Parse a caption given as lower-case words; None when it has no noun phrase (no scene graph)."""
    words = tuple(words)
    tags = _tag(words)
    objects: list[tuple[int, ...]] = []
    attributes: list[tuple[int, tuple[int, ...]]] = []
    relations: list[tuple[int, int, tuple[int, ...]]] = []
    predicate: list[int] = []
    predicate_has_verb = False
    pending_adjectives: list[int] = []
    subject: int | None = None
    prepositional_objects: set[int] = set()
    after_copula = False
    index = 0
    while index < len(words):
        tag = tags[index]
        if tag == "NOUN":
            nouns = []
            while index < len(words) and tags[index] == "NOUN":
                nouns.append(index)
                index += 1
            objects.append(tuple(nouns))
            current = len(objects) - 1
            attributes += [(current, (adjective,)) for adjective in pending_adjectives]
            if predicate and current > 0:
                if predicate_has_verb:
                    source = subject if subject is not None else current - 1
                else:
                    source = current - 1
                    prepositional_objects.add(current)
                relations.append((source, current, tuple(predicate)))
            if current not in prepositional_objects and not (predicate and predicate_has_verb):
                subject = current
            predicate, predicate_has_verb, pending_adjectives, after_copula = [], False, [], False
            continue
        if tag == "ADJ":
            if after_copula and objects and not predicate:
                attributes.append((len(objects) - 1, (index,)))
            else:
                pending_adjectives.append(index)
        elif tag in ("PREP", "VERB"):
            if objects:
                predicate.append(index)
                predicate_has_verb = predicate_has_verb or tag == "VERB"
            pending_adjectives = []
        elif tag == "COP":
            after_copula = True
        elif tag == "SEP":
            # "the cat is black and white": a conjunction keeps listing the copula's adjectives.
            keep_copula = after_copula and index > 0 and tags[index - 1] == "ADJ"
            predicate, predicate_has_verb, pending_adjectives, after_copula = [], False, [], keep_copula
        index += 1
    if not objects:
        return None
    return SceneGraph(words, tuple(objects), tuple(attributes), tuple(relations))


def parse_caption(caption: str) -> SceneGraph | None:
    """Split and parse a caption string (see :func:`parse_scene_graph`)."""
    return parse_scene_graph(split_words(caption))
