"""What the signup form tells a reader about the address they typed: why it is not one, in our
words, and "did you mean …?" for a slip in a popular mail domain.

email-validator's messages are precise but technical ("The part after the @-sign is not valid.
It should have a period."); :func:`reader_message` maps them to short sentences that fit under
the field on a phone. :func:`suggest_address` is only ever a hint: the typed address is still
accepted when it is valid.
"""

from __future__ import annotations

import difflib

from email_validator import EmailNotValidError

GENERIC = "Please check your email address: it should look like jane@example.com."
# (words of email-validator's message, ours); the first match wins, so the specific come first.
_MESSAGES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("must have an @-sign",), "Please include an @, like jane@example.com."),
    (("instead of a regular at-sign",), "Please type a plain @, like jane@example.com."),
    (("something before the @-sign",), "Please add the part before the @, like jane@."),
    (("something after the @-sign",), "Please add the part after the @, like example.com."),
    (
        ("should have a period",),
        "Please check the part after the @: it needs a dot, like example.com.",
    ),
    (("so many characters",), "The part after the @ is too long."),
    (("SPACE",), "Please take out the spaces: an email address has none."),
    (("two periods in a row",), "Please check the dots: an address never has two in a row."),
    (("period",), "Please check the dots: an address cannot start or end with one."),
    (("angle brackets", "display name"), "Please type just the address, like jane@example.com."),
    (("too long",), "That email address is too long."),
    (("after the @-sign",), "Please check the part after the @, like example.com."),
    (("before the @-sign",), "Please check the characters before the @."),
)

# The mail services most readers use: what a slip is compared against.
POPULAR_DOMAINS = (
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "yahoo.co.uk",
    "hotmail.co.uk",
    "btinternet.com",
    "comcast.net",
)
# Real services a letter away from a popular one: never "corrected".
LOOKALIKE_DOMAINS = frozenset({"mail.com", "email.com", "ymail.com", "cloud.com"})
# Slips in a popular domain's ending that are no ending anyone uses for that name.
_SUFFIX_SLIPS = {
    "com": frozenset({"co", "cm", "om", "con", "cmo", "ocm", "cpm", "vom", "xom", "comm", "coom"}),
    "net": frozenset({"ne", "nt", "et", "nte", "bet", "met", "nett"}),
    "co.uk": frozenset({"co.u", "co.k", "couk", "co.uj", "co.ul", "co.ik"}),
    "de": frozenset({"d", "dr", "dee"}),
    "me": frozenset({"m", "mee"}),
}
# difflib's similarity of the name before the ending: 0.8 admits one slip in a name the length
# of gmail (a swap, a missing or an extra letter) and refuses other names such as gmx or live.
_NAME_CUTOFF = 0.8


def reader_message(exc: EmailNotValidError) -> str:
    """Our short, friendly sentence for one of email-validator's refusals."""
    text = str(exc)
    for words, message in _MESSAGES:
        if any(word in text for word in words):
            return message
    return GENERIC


def suggest_address(typed: str) -> str | None:
    """The address with its domain's likely slip corrected (jane@gmial.com → jane@gmail.com).

    One slip at a time: in the name (gmial.com), in the ending (gmail.co) or a missing dot
    (gmailcom). Country endings of a popular name (hotmail.ca, gmx.at) are left alone, as is
    every domain that is popular, a known lookalike, or like none of them.
    """
    local, at, domain = typed.strip().rpartition("@")
    domain = domain.casefold()
    if not at or not local or domain in POPULAR_DOMAINS or domain in LOOKALIKE_DOMAINS:
        return None
    fixed = _fixed_domain(domain)
    return f"{local}@{fixed}" if fixed else None


def _fixed_domain(domain: str) -> str | None:
    """The popular domain ``domain`` is one slip away from, if any."""
    for popular in POPULAR_DOMAINS:
        if domain.replace(".", "") == popular.replace(".", ""):
            return popular
    name, _, suffix = domain.partition(".")
    for popular in POPULAR_DOMAINS:
        popular_name, _, popular_suffix = popular.partition(".")
        if name == popular_name and suffix in _SUFFIX_SLIPS.get(popular_suffix, ()):
            return popular
    alike = {p.partition(".")[0]: p for p in POPULAR_DOMAINS if p.partition(".")[2] == suffix}
    close = difflib.get_close_matches(name, list(alike), n=1, cutoff=_NAME_CUTOFF)
    return alike[close[0]] if close else None
