# Production image: gunicorn serving portfolio_site.wsgi, static files by WhiteNoise, running as a non-root user.
#   docker build -t portfolio-back-office .
#   docker run --rm -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=postgres://... -e REDIS_URL=redis://... portfolio-back-office
#   docker run ... portfolio-back-office worker     (a Celery worker)    docker run ... portfolio-back-office beat
# See README.md "Docker" for migrations, the first administrator and running without TLS in front.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portfolio_site.settings.production

WORKDIR /app

# Runtime dependencies only (no test or lint tools); a layer of its own so code changes reuse it.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are collected at build time with the production settings. Those settings refuse to load
# without a strong SECRET_KEY, a REDIS_URL and ENCRYPTION_KEYS, so this one RUN line gets dummies; they are
# not stored in the image, and collectstatic uses none of them.
RUN SECRET_KEY=collectstatic-build-only-dummy-key-not-a-secret-0123456789 REDIS_URL=redis://unused:6379/0 \
    ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= python manage.py collectstatic --noinput

# Code and static files stay owned by root (read-only for the app). /app/data is the one writable place,
# for a SQLite file when trying the image out (DATABASE_URL=sqlite:////app/data/db.sqlite3).
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown app:app /app/data
USER app

EXPOSE 8000

# Liveness only (touches neither database nor cache). The request's Host is 127.0.0.1, so ALLOWED_HOSTS
# must keep 127.0.0.1 in it; /health/ is exempt from the HTTPS redirect.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]

# One image, three roles: the first argument picks web (the default), worker or beat (docker-entrypoint.sh).
ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["web"]
