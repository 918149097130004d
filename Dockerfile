# The bot as a container: the same package and templates as a checkout, data in a volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mailbot ./mailbot
RUN pip install --no-cache-dir ".[postgres]"
COPY templates ./templates
COPY data/procedures.toml data/staff.toml data/participants.csv ./defaults/
COPY data/samples ./defaults/samples
# The bot runs as its own unprivileged user; the data volume is theirs.
RUN useradd --system --create-home --home-dir /home/mailbot mailbot && mkdir -p /data && chown mailbot /data
ENV MAILBOT_DATA_DIR=/data \
    MAILBOT_TEMPLATES_DIR=/app/templates \
    MAILBOT_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
VOLUME ["/data"]
USER mailbot
# /healthz: 200 healthy or degraded, 503 failing (urlopen raises, so the check fails); a standby answers 200.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=20)"
# First start: seed the data volume with the directories and procedures, never overwriting edits.
CMD ["sh", "-c", "cp -rn /app/defaults/. /data/ && exec mailbot run"]
