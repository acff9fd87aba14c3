"""The one Jinja2 loader behind web pages and emails, with a site's override folder first."""

from __future__ import annotations

from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader

from newsletter.settings import Settings


def templates_root() -> Path:
    """Where the shipped templates are: inside the wheel, or the repo's top-level folder."""
    package = Path(__file__).resolve().parent.parent  # newsletter/
    packaged = package / "_templates"
    if packaged.is_dir():
        return packaged
    return package.parent / "templates"


def template_loader(settings: Settings) -> BaseLoader:
    """Loader that looks in ``NEWSLETTER_TEMPLATE_DIR`` first, then in the shipped templates."""
    loaders: list[BaseLoader] = []
    if settings.template_dir:
        loaders.append(FileSystemLoader(settings.template_dir))
    loaders.append(FileSystemLoader(str(templates_root())))
    return ChoiceLoader(loaders)
