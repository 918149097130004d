"""The bot's HTTP listener (Starlette on uvicorn, in the daemon's event loop): /healthz and /metrics."""
