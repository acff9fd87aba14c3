"""A digest's layout: the reader's top story leads, the rest in sections by category."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content.selection import PostView
from newsletter.issues.layout import UNCATEGORISED, Section, arrange, catalogue


def post(n: int, *categories: str) -> PostView:
    """A post with an id and categories."""
    now = datetime.now(UTC)
    return PostView(n, f"Story {n}", f"https://e.com/{n}", "", "", categories, "", now)


def titles(sections: tuple[Section, ...]) -> list[tuple[str, list[int]]]:
    """Each section's title and post ids."""
    return [(s.title, [p.id for p in s.posts]) for s in sections]


def test_the_first_post_leads_and_one_category_needs_no_headings() -> None:
    layout = arrange([post(1, "World"), post(2, "world"), post(3, "World", "Asia")])
    assert layout.lead is not None and layout.lead.id == 1
    assert titles(layout.sections) == [("", [2, 3])]
    assert arrange([post(1, "World")]).sections == ()
    assert arrange([]).lead is None


def test_sections_by_most_posts_then_newest_without_newsletter_categories() -> None:
    posts = [post(1, "World"), post(2, "Sport"), post(3, "Business"), post(4, "Business")]
    posts += [post(5), post(6, "Sport", "Business")]
    layout = arrange(posts)
    assert layout.lead is not None and layout.lead.id == 1
    # Sport and Business have two each; Sport's newest post is newer. A post appears once.
    assert titles(layout.sections) == [
        ("Sport", [2, 6]),
        ("Business", [3, 4]),
        (UNCATEGORISED, [5]),
    ]


def test_sections_follow_the_newsletters_category_order_and_spelling() -> None:
    posts = [post(1, "sport"), post(2, "Local", "politics"), post(3, "Sport"), post(4, "SPORT")]
    layout = arrange(posts, ["Politics", "Sport"])
    assert titles(layout.sections) == [("Politics", [2]), ("Sport", [3, 4])]


@given(st.lists(st.sampled_from(["A", "b", "B", "", "C"]), min_size=1, max_size=8), st.data())
@settings(max_examples=200, deadline=None)
def test_every_layout_of_every_selection_is_made_of_catalogued_pieces(
    kinds: list[str], data: st.DataObject
) -> None:
    posts = [post(i, *([k] if k else [])) for i, k in enumerate(kinds)]
    newsletter = data.draw(st.sampled_from([(), ("B", "A"), ("c",)]))
    pieces = set(catalogue(posts, newsletter))
    chosen = data.draw(st.lists(st.sampled_from(range(len(posts))), unique=True, min_size=1))
    selection = [posts[i] for i in sorted(chosen)]
    layout = arrange(selection, newsletter)
    assert set(layout.pieces()) <= pieces
    shown = [value.id for _, value in layout.pieces() if isinstance(value, PostView)]
    assert shown[0] == selection[0].id  # the reader's top story leads
    assert sorted(shown) == sorted(p.id for p in selection)  # every post, once
