"""Posts that read like a news site's: non-ASCII titles, an image, authors, long summaries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from newsletter.store.db import utcnow
from newsletter.store.models import Post


def add_posts(db: Session) -> list[Post]:
    """Three posts, newest first, with non-ASCII titles, an image and a long summary."""
    now = utcnow()
    specs = [
        (
            "Élection : le résultat “final” arrive 😀",
            ["Politics"],
            "https://img.example.com/vote.jpg",
            "Zoë Ünal",
        ),
        ("东京 markets rally as the yen steadies", ["Business"], "", "Kenji Sato"),
        ("Match report: a late winner at the Riverside", ["Sport"], "", ""),
    ]
    posts = []
    for i, (title, categories, image, author) in enumerate(specs):
        post = Post(
            guid=f"render-{i}",
            link=f"https://news.example.com/2024/06/story-{i}?utm_source=newsletter&x=1",
            title=title,
            summary=(
                "Officials said the count would finish overnight, and observers expect a "
                "close result in several districts where turnout was unusually high. " * 2
            ).strip(),
            author=author,
            categories=categories,
            image_url=image,
            published_at=now - timedelta(hours=i + 1),
        )
        db.add(post)
        posts.append(post)
    db.flush()
    return posts
