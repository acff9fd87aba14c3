"""Fixtures of the reader's path tests."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tests.support.readers import Lists, make_lists


@pytest.fixture
def lists(db: Session) -> Lists:
    """Three public lists and a private one."""
    return make_lists(db)
