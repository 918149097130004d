"""The container stack's files: valid for Compose, and saying what the go-live issue asks of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker-compose config` (scripts/setup.sh installs Compose v1, the one Debian packages) with .env made
    from .env.example, as a deployer starts."""
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed: run scripts/setup.sh"
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    result = subprocess.run([compose, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "MAILBOT_HTTP_HOST: 0.0.0.0" in config
    assert "condition: service_healthy" in config
    assert "127.0.0.1:8080" in config or "host_ip: 127.0.0.1" in config


def test_the_compose_file_has_no_obsolete_version_key() -> None:
    assert not any(line.startswith("version:") for line in (REPO / "docker-compose.yml").read_text().splitlines())


def test_the_image_runs_unprivileged_with_a_health_check() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "\nUSER mailbot\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
