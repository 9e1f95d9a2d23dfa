# One image for every process of the broker; docker-compose.yml picks the command and
# gives each its health check.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BROKER_BIND=0.0.0.0 \
    BROKER_VAR_DIR=/var/lib/broker BROKER_STATIC_ROOT=/app/static
WORKDIR /app
# Every app of the project (.dockerignore leaves out tests, docs, the venv, local data).
COPY . .
# The staff pages' CSS and JS (htmx) are collected at build time, so the web process
# serves them (whitenoise) with nothing to fetch or write at run time. collectstatic runs
# only the staticfiles checks: the placeholder key is never used by a running broker.
RUN pip install --no-cache-dir . \
    && SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0 \
    && test -f /app/static/frontdesk/htmx.min.js \
    && useradd --system --home /var/lib/broker broker \
    && mkdir -p /var/lib/broker/spool && chown -R broker /var/lib/broker
USER broker
EXPOSE 8000 11112 2575
CMD ["gunicorn", "broker.wsgi:application", "--bind", "0.0.0.0:8000"]
