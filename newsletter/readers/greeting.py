"""The name a mail greets a reader by: the first name where one can be told, else the name.

Readers type one free-form name field, so "Jane Reader" greets as "Jane", while names whose
first word is not a given name keep their whole form: a single word, a title and a surname
("Dr. Smith"), an initial ("J. Reader"), or a name in a CJK script, written family name
first ("山田 太郎"); "Reader, Jane" greets as "Jane".
"""

from __future__ import annotations

import re

# Courtesy and academic titles, case-folded and without their dot.
TITLES = frozenset({"dr", "mr", "mrs", "ms", "mx", "miss", "prof", "sir", "dame", "rev", "fr"})
# Han, Hiragana, Katakana, Hangul and their compatibility forms: scripts whose names put the
# family name first, so their first word is not what a friend would call the reader.
_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)


def first_name(name: str) -> str:
    """The part of an already one-line ``name`` to greet with; "" when there is none."""
    words = name.split(" ")
    if len(words) < 2 or not words[0]:
        # One word, or nothing at all: whatever the reader gave is how they want to be called.
        return "" if _is_title(name) else name
    if _CJK.match(name):
        return name
    rest = words
    while rest and _is_title(rest[0]):
        rest = rest[1:]
    if not rest:
        return ""
    if len(rest) == 1 and len(rest) < len(words):
        # "Dr. Smith": a surname after a title; greeting with the surname alone would be rude.
        return name
    first = rest[0]
    if first.endswith(",") and len(rest) > 1:
        return rest[1]  # "Reader, Jane": family name first, as in a register
    if len(first.rstrip(".")) <= 1:
        return name  # "J. Reader": an initial is no name to greet with
    return first


def _is_title(word: str) -> bool:
    """True for a courtesy title such as "Dr." or "Mrs"."""
    return word.rstrip(".").casefold() in TITLES
