# The bot as a container: the same package and templates as a checkout, data in a volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mailbot ./mailbot
RUN pip install --no-cache-dir ".[postgres]"
COPY templates ./templates
COPY data/procedures.toml data/staff.toml data/participants.csv ./defaults/
COPY data/samples ./defaults/samples
ENV MAILBOT_DATA_DIR=/data \
    MAILBOT_TEMPLATES_DIR=/app/templates \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
# First start: seed the data volume with the directories and procedures, never overwriting edits.
CMD ["sh", "-c", "cp -rn /app/defaults/. /data/ && exec mailbot run"]
