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
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
USER mailbot
HEALTHCHECK --interval=60s --timeout=30s --retries=3 CMD mailbot status >/dev/null; [ $? -le 1 ]
# First start: seed the data volume with the directories and procedures, never overwriting edits.
CMD ["sh", "-c", "cp -rn /app/defaults/. /data/ && exec mailbot run"]
