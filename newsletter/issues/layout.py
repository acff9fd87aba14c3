"""How a reader's posts are laid out in a digest: a lead story, then sections by category.

The layout depends on the reader's own posts (their topics, what they already had), so it is
computed per selection: :func:`arrange` is cheap, and the fast path of
:mod:`newsletter.issues.rendering` memoises it with the selection's plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.content.selection import PostView

# The heading of posts without a category, when the others have sections.
UNCATEGORISED = "More stories"
# One unit of a digest's posts region: ("lead", post), ("post", post) or ("section", title).
Piece = tuple[str, PostView | str]


@dataclass(frozen=True)
class Section:
    """Posts under one heading; ``title`` is "" when the digest has no sections."""

    title: str
    posts: tuple[PostView, ...]


@dataclass(frozen=True)
class DigestLayout:
    """The lead story (the reader's top post) and the rest, in sections."""

    lead: PostView | None
    sections: tuple[Section, ...]

    def pieces(self) -> tuple[Piece, ...]:
        """The layout as the fast path splices it: ("lead", post), ("section", title), ("post",
        post), in reading order."""
        out: list[Piece] = []
        if self.lead is not None:
            out.append(("lead", self.lead))
        for section in self.sections:
            if section.title:
                out.append(("section", section.title))
            out.extend(("post", post) for post in section.posts)
        return tuple(out)


def section_of(post: PostView, categories: Sequence[str]) -> str:
    """The one section a post goes in: its first category the newsletter carries (in the
    newsletter's spelling), else its first category; "" for none."""
    wanted = {c.casefold(): c for c in categories}
    for category in post.categories:
        found = wanted.get(category.casefold())
        if found is not None:
            return found
    return post.categories[0].strip() if post.categories else ""


def arrange(posts: Sequence[PostView], categories: Sequence[str] = ()) -> DigestLayout:
    """Lead with the first post; group the rest by section when the posts span several.

    Sections follow the newsletter's category order when it has one, else the most posts
    first (ties: the section of the newer post first); uncategorised posts come last.
    """
    if not posts:
        return DigestLayout(None, ())
    lead, rest = posts[0], posts[1:]
    keys = [section_of(post, categories) for post in posts]
    if len({key.casefold() for key in keys}) < 2:
        return DigestLayout(lead, (Section("", tuple(rest)),) if rest else ())
    groups: dict[str, list[PostView]] = {}
    titles: dict[str, str] = {}
    for key, post in zip(keys[1:], rest, strict=True):
        folded = key.casefold()
        groups.setdefault(folded, []).append(post)
        titles.setdefault(folded, key or UNCATEGORISED)
    order = {c.casefold(): i for i, c in enumerate(categories)}
    first_seen = {key: i for i, key in enumerate(groups)}

    def rank(key: str) -> tuple[int, int, int]:
        """Sort key: uncategorised last, then newsletter order or most posts, then newest."""
        if not key:
            return (2, 0, 0)
        if key in order:
            return (0, order[key], 0)
        return (1, -len(groups[key]), first_seen[key])

    return DigestLayout(
        lead,
        tuple(Section(titles[key], tuple(groups[key])) for key in sorted(groups, key=rank)),
    )


# --- Pieces: the units the fast path renders once per issue and splices per reader -----------


def piece_context(piece: Piece) -> dict[str, Any]:
    """The template variables with which the posts block renders just ``piece``."""
    kind, value = piece
    if kind == "lead" and isinstance(value, PostView):
        return {"lead": value, "sections": [], "posts": [value]}
    if kind == "post" and isinstance(value, PostView):
        return {"lead": None, "sections": [Section("", (value,))], "posts": [value]}
    return {"lead": None, "sections": [Section(str(value), ())], "posts": []}


def catalogue(posts: Sequence[PostView], categories: Sequence[str] = ()) -> tuple[Piece, ...]:
    """Every piece a selection of ``posts`` can use: each post as the lead and as a story
    (the first is never a story: whenever it is chosen it leads), and each possible heading."""
    pieces: list[Piece] = [("lead", post) for post in posts]
    pieces += [("post", post) for post in posts[1:]]
    titles = dict.fromkeys(section_of(post, categories) or UNCATEGORISED for post in posts)
    pieces += [("section", title) for title in titles]
    return tuple(pieces)
