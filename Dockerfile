FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OPENBLAS_NUM_THREADS=1 \
    TASTEMAKER_HOST=0.0.0.0 \
    TASTEMAKER_PORT=8000 \
    TASTEMAKER_DATA_DIR=/var/lib/tastemaker/data \
    TASTEMAKER_MODEL_DIR=/var/lib/tastemaker/models

WORKDIR /srv/tastemaker
COPY pyproject.toml README.md alembic.ini requirements.lock ./
COPY app ./app
COPY migrations ./migrations
RUN pip install -r requirements.lock . \
    && useradd --system --uid 10001 --home-dir /srv/tastemaker tastemaker \
    && mkdir -p /var/lib/tastemaker/data /var/lib/tastemaker/models \
    && chown -R tastemaker /var/lib/tastemaker

USER tastemaker
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
# `exec`: `tastemaker serve` replaces the shell and is PID 1, so `docker stop`'s SIGTERM reaches
# it: it drains requests in flight (TASTEMAKER_SHUTDOWN_SECONDS), stops its workers and exits 0.
# docker stop waits 10 s by default: give it more (`docker stop -t 30`, compose's
# stop_grace_period). `docker run --init` (compose: `init: true`) adds a PID 1 that also reaps
# trainer processes orphaned by a worker that died.
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "tastemaker migrate && exec tastemaker serve"]
