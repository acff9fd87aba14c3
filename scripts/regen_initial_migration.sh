#!/usr/bin/env bash
# Before the first release the schema lives in one initial migration: regenerate it from
# newsletter/store/models.py after changing the models. (After a release: add a new revision instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f newsletter/store/migrations/versions/0001_initial.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from newsletter.store.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/empty.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
mv newsletter/store/migrations/versions/0001_initial_schema.py newsletter/store/migrations/versions/0001_initial.py
rm -rf "$tmp"
.venv/bin/ruff format -q newsletter/store/migrations/versions/0001_initial.py || true
echo "regenerated newsletter/store/migrations/versions/0001_initial.py"
