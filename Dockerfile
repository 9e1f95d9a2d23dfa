# One image for every process of the broker; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BROKER_BIND=0.0.0.0 BROKER_VAR_DIR=/var/lib/broker
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY worklist worklist
COPY mpps mpps
COPY hl7v2 hl7v2
COPY core core
COPY routing routing
COPY templates templates
COPY manage.py ./
RUN pip install --no-cache-dir . \
    && useradd --system --home /var/lib/broker broker \
    && mkdir -p /var/lib/broker/spool && chown -R broker /var/lib/broker
USER broker
EXPOSE 8000 11112 2575
CMD ["gunicorn", "broker.wsgi:application", "--bind", "0.0.0.0:8000"]
