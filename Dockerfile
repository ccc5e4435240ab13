# The web and worker image used by compose.yaml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV CHIPMUNK_DATA_DIR=/data STATIC_ROOT=/app/staticfiles
RUN mkdir -p /data && python manage.py collectstatic --noinput
EXPOSE 8000
# `manage.py run` serves with config.server's options: 431 past MAX_REQUEST_HEADER_SIZE (docs/security.md).
CMD ["python", "manage.py", "run", "--no-worker"]
