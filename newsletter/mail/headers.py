"""Header fields written by our own code from plain text: one line, encoded, folded at 78 octets.

Every value that comes from content or people (titles, subjects, display names) goes through
here, never through ``email.policy``: the standard library decodes RFC 2047 encoded-words found
in its input before it checks for line breaks (CPython before 3.11.10 / 3.12.5 then folds a
decoded CR/LF into the output as a real line break). Here the input is text only: control,
line-separator and format characters are dropped first, and any word that is not plain ASCII,
or merely looks like an encoded-word, is written as encoded-words of its literal characters,
so a decoder yields exactly what was given.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable, Iterator
from email.utils import parseaddr

CRLF = "\r\n"
MAX_LINE = 78  # RFC 5322: lines SHOULD be at most 78 characters, CRLF excluded
_WORD_MAX = 75  # RFC 2047: an encoded-word is at most 75 characters
_Q_PREFIX = "=?utf-8?q?"
_B_PREFIX = "=?utf-8?b?"
_OVERHEAD = len(_Q_PREFIX) + 2  # prefix and "?="
_MIN_ROOM = 12  # one four-byte character, Q-encoded
# A plain word longer than this is encoded so that it can be split across lines.
_LONG_WORD = MAX_LINE - 20
# RFC 5322 atext: what a display-name word may be without quoting or encoding.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Q encoding of each byte, restricted to what RFC 2047 allows in a phrase (so safe everywhere).
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q = tuple("_" if b == 0x20 else chr(b) if b in _Q_SAFE else f"={b:02X}" for b in range(256))


def one_line(value: str) -> str:
    """Plain text as one line: format characters dropped, other controls and breaks as spaces.

    CR, LF, NEL, U+2028/U+2029 and every other character that is not printable become a space
    (whitespace is then collapsed); format characters (soft hyphen, zero-width joiners, bidi
    overrides) are dropped without a space, since they sit inside words.
    """
    if value.isprintable():
        return " ".join(value.split())
    chars = (
        ch if ch.isprintable() else "" if unicodedata.category(ch) == "Cf" else " " for ch in value
    )
    return " ".join("".join(chars).split())


def unstructured(name: str, value: str) -> bytes:
    """An unstructured header (``Subject``) holding ``value`` as plain text, encoded and folded."""
    return _fold(name, _tokens(one_line(value), _plain_text_word))


def phrase(value: str) -> str:
    """A display name as an RFC 5322 phrase (atoms and encoded-words), on one unfolded line."""
    text = one_line(value)
    if _PLAIN_PHRASE.fullmatch(text) and "=?" not in text:
        return text
    return " ".join(item for item, _ in _items(_tokens(text, _plain_phrase_word)))


def mailbox(name: str, display_name: str, address: str) -> bytes:
    """``Name: display name <address>``, the name encoded here, the address checked."""
    _check_address(address)
    text = one_line(display_name)
    if not text:
        return f"{name}: {address}{CRLF}".encode()
    if (
        _PLAIN_PHRASE.fullmatch(text)
        and "=?" not in text
        and len(name) + len(text) + len(address) + 5 <= MAX_LINE
    ):
        return f"{name}: {text} <{address}>{CRLF}".encode()
    tokens = _tokens(text, _plain_phrase_word)
    tokens.append((f"<{address}>", False))
    return _fold(name, tokens)


def structured(name: str, value: str) -> bytes:
    """A header whose ASCII value we built ourselves (URLs, ids, a List-Id), folded at spaces."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"not a header field name: {name!r}")
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{name} must be printable ASCII on one line")
    return _fold(name, [(word, False) for word in value.split()])


def _check_address(address: str) -> None:
    """Refuse an address that could end the header or add a second mailbox."""
    if not address or not address.isprintable() or any(ch in address for ch in " <>,;"):
        raise ValueError(f"not a single mail address: {address!r}")


def _plain_text_word(word: str) -> bool:
    """True when a word of unstructured text may go on the wire as it is."""
    return word.isascii() and "=?" not in word and len(word) <= _LONG_WORD


def _plain_phrase_word(word: str) -> bool:
    """True when a word of a display name is an atom that needs no encoding."""
    return _ATOM.fullmatch(word) is not None and "=?" not in word and len(word) <= _LONG_WORD


def _tokens(text: str, plain: Callable[[str], bool]) -> list[tuple[str, bool]]:
    """``text`` (one line) as runs: (word, False) as is, or (words, True) to encode together.

    Neighbouring words to encode share a run, with their spaces inside it: white space between
    two encoded-words is not part of the text, so it must be encoded within them.
    """
    tokens: list[tuple[str, bool]] = []
    for word in text.split(" ") if text else ():
        if plain(word):
            tokens.append((word, False))
        elif tokens and tokens[-1][1]:
            tokens[-1] = (tokens[-1][0] + " " + word, True)
        else:
            tokens.append((word, True))
    return tokens


def _fold(name: str, tokens: list[tuple[str, bool]]) -> bytes:
    """``Name: items``, with a line break (CRLF and a space) where ``_items`` asks for one."""
    out = [name, ":"]
    for item, fold in _items(tokens, len(name) + 1):
        out.append(CRLF + " " + item if fold else " " + item)
    out.append(CRLF)
    return "".join(out).encode("utf-8")


def _items(tokens: list[tuple[str, bool]], column: int = 0) -> Iterator[tuple[str, bool]]:
    """Wire items (plain words and encoded-words), each with whether to fold before it.

    A line is folded before an item that would pass 78 characters (unless nothing is on the
    line yet). The first encoded-word of a run is sized to the room left on the current line,
    the rest to a whole line, so encoded text never passes 78 characters either.
    """
    fresh = True  # nothing on the current line but the field name or the fold's space
    for text, encode in tokens:
        if not encode:
            fold = not fresh and column + 1 + len(text) > MAX_LINE
            column = (0 if fold else column) + 1 + len(text)
            fresh = False
            yield text, fold
            continue
        data = text.encode("utf-8")
        use_q = sum(len(_Q[b]) for b in data) <= 4 * -(-len(data) // 3)
        start = 0
        while start < len(text):
            room = min(MAX_LINE - column - 1, _WORD_MAX) - _OVERHEAD
            fold = not fresh and room < _MIN_ROOM
            if fold:
                column, room = 0, _WORD_MAX - _OVERHEAD
            word, start = _encoded_word(text, start, room, use_q)
            column = column + 1 + len(word)
            fresh = False
            yield word, fold


def _encoded_word(text: str, start: int, room: int, use_q: bool) -> tuple[str, int]:
    """One encoded-word of whole characters from ``text[start:]`` within ``room`` characters."""
    size, end, taken = 0, start, bytearray()
    while end < len(text):
        data = text[end].encode("utf-8")
        if use_q:
            grown = size + sum(len(_Q[b]) for b in data)
        else:
            grown = 4 * -(-(len(taken) + len(data)) // 3)
        if grown > room and end > start:
            break
        size = grown
        taken += data
        end += 1
    if use_q:
        return _Q_PREFIX + "".join(_Q[b] for b in taken) + "?=", end
    return _B_PREFIX + base64.b64encode(bytes(taken)).decode("ascii") + "?=", end


def address_field(name: str, value: str) -> bytes:
    """``From`` or ``Reply-To`` from a configured ``Display Name <address>`` (or a bare address).

    The display name is taken as text (``parseaddr`` decodes no encoded-words) and encoded here.
    """
    display_name, address = parseaddr(value)
    # parseaddr guesses at malformed input; a guess that is not the value's end is refused.
    value = value.strip()
    if "@" not in address or (value != address and not value.endswith(f"<{address}>")):
        raise ValueError(f"{name} is not one mail address: {value!r}")
    return mailbox(name, display_name, address)
