# The newsletter service: one image for web, worker, beat and the one-shot migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NEWSLETTER_DATA_DIR=/var/lib/newsletter \
    NEWSLETTER_ENV=production
# Production unless told otherwise: the image refuses to start without a real
# NEWSLETTER_SECRET_KEY and has no dev mail viewer. Development runs `scripts/dev` instead.

# An unprivileged user owns only the data directory (beat's schedule file lives there).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/newsletter --create-home \
        --shell /usr/sbin/nologin newsletter

WORKDIR /src
COPY pyproject.toml README.md ./
COPY newsletter ./newsletter
COPY worker ./worker
COPY templates ./templates
# A regular (non-editable) install: templates and migrations ship inside the package.
RUN pip install . && rm -rf /src

WORKDIR /var/lib/newsletter
USER newsletter
EXPOSE 8000

# docker-compose.yml overrides the command per service (web, worker, beat, migrate).
CMD ["newsletter", "web", "--host", "0.0.0.0", "--port", "8000"]
