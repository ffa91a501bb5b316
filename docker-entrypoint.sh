#!/bin/sh
# The image's roles: `web` (gunicorn, the default), `worker` (a Celery worker), `beat` (the one scheduler of
# periodic jobs: run exactly one). Anything else runs as given (`docker run ... python manage.py migrate`).
set -e
role="${1:-web}"
case "$role" in
  web)
    shift || true
    exec gunicorn portfolio_site.wsgi --bind 0.0.0.0:8000 --workers "${WEB_CONCURRENCY:-3}" --access-logfile - "$@"
    ;;
  worker)
    shift
    exec celery -A portfolio_site worker --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  beat)
    shift
    exec celery -A portfolio_site beat --loglevel "${LOG_LEVEL:-INFO}" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
