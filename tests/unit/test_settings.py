"""The settings as a deployer meets them."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import time
from pathlib import Path

import pytest

from mailbot.settings import ConfigError, Settings

REPO = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    """.env.example is how a deployer learns the variables: none may be missing from it."""
    text = (REPO / ".env.example").read_text()
    missing = [name for name in Settings.names() if f"MAILBOT_{name.upper()}=" not in text]
    assert missing == []


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Settings]:
    """Settings read from exactly the given variables, in a working directory with no .env file."""
    for key in list(os.environ):
        if key.upper().startswith("MAILBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def read(**env: str) -> Settings:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings()
    return read


@pytest.mark.parametrize("variable, value, line", [
    ("MAILBOT_IMAP_PORT", "imap", "MAILBOT_IMAP_PORT: must be a whole number (got 'imap')"),
    ("MAILBOT_IMAP_PORT", "0", "MAILBOT_IMAP_PORT: must be at least 1 (got '0')"),
    ("MAILBOT_SMTP_PORT", "70000", "MAILBOT_SMTP_PORT: must be at most 65535 (got '70000')"),
    ("MAILBOT_HTTP_PORT", "-1", "MAILBOT_HTTP_PORT: must be at least 0 (got '-1')"),
    ("MAILBOT_RETENTION_YEARS", "1.5", "MAILBOT_RETENTION_YEARS: must be a whole number (got '1.5')"),
    ("MAILBOT_RETENTION_YEARS", "1e1", "MAILBOT_RETENTION_YEARS: must be a whole number (got '1e1')"),
    ("MAILBOT_IMAP_SECURITY", "tls", "MAILBOT_IMAP_SECURITY: must be one of ssl, starttls, none (got 'tls')"),
    ("MAILBOT_FIRST_RUN", "all", "MAILBOT_FIRST_RUN: must be one of process-existing, skip-existing (got 'all')"),
    ("MAILBOT_IMAP_POLL_INTERVAL", "0", "MAILBOT_IMAP_POLL_INTERVAL: must be more than 0 (got '0')"),
    ("MAILBOT_IMAP_POLL_INTERVAL", "nan", "MAILBOT_IMAP_POLL_INTERVAL: must be a number (got 'nan')"),
    ("MAILBOT_IMAP_IDLE_RENEW", "ten", "MAILBOT_IMAP_IDLE_RENEW: must be a number (got 'ten')"),
    ("MAILBOT_SIGN_IN_RETRY", "0.5", "MAILBOT_SIGN_IN_RETRY: must be at least 1 (got '0.5')"),
    ("MAILBOT_OFFICE_OPENS", "9am", "MAILBOT_OFFICE_OPENS: must be a time of day like 09:00 (got '9am')"),
    ("MAILBOT_OFFICE_CLOSES", "24:00", "MAILBOT_OFFICE_CLOSES: must be a time of day like 09:00 (got '24:00')"),
    ("MAILBOT_DIGEST_TIME", "soon", "MAILBOT_DIGEST_TIME: must be a time of day like 09:00 (got 'soon')"),
    ("MAILBOT_ADDRESS", "complaints+x@1mm.org.uk",
     "MAILBOT_ADDRESS: must be a plain address like complaints@1mm.org.uk (got 'complaints+x@1mm.org.uk')"),
    ("MAILBOT_ADMIN_EMAIL", "Ann <ann@1mm.org.uk>",
     "MAILBOT_ADMIN_EMAIL: must be a plain address like ceo@1mm.org.uk (got 'Ann <ann@1mm.org.uk>')"),
    ("MAILBOT_PUBLIC_URL", "complaints.1mm.org.uk", "MAILBOT_PUBLIC_URL: must be the address people reach the bot's "
     "pages at, like https://complaints.1mm.org.uk (got 'complaints.1mm.org.uk')"),
    ("MAILBOT_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/33",
     "MAILBOT_TRUSTED_PROXIES: '10.0.0.0/33' is not an address or a CIDR range (got '10.0.0.1, 10.0.0.0/33')"),
    ("MAILBOT_TRUST_EXCHANGE_INTERNAL", "contoso", "MAILBOT_TRUST_EXCHANGE_INTERNAL: must be your Microsoft 365 "
     "tenant id, a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 (Entra admin centre, Overview, Tenant ID) "
     "(got 'contoso')"),
    ("MAILBOT_FORM_MAX_BYTES", "lots",
     "MAILBOT_FORM_MAX_BYTES: 'lots' is not a size: write bytes, or a number with K or M, like 10M (got 'lots')"),
    ("MAILBOT_TIMEZONE", "Mars/Olympus", "MAILBOT_TIMEZONE: unknown time zone 'Mars/Olympus' (got 'Mars/Olympus')"),
])
def test_a_value_that_will_not_do_stops_start_up_with_one_line_naming_the_variable(
        variables: Callable[..., Settings], variable: str, value: str, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        variables(**{variable: value})
    assert str(caught.value) == line


@pytest.mark.parametrize("env, name, expected", [
    ({}, "imap_port", None),
    ({}, "http_port", 8080),
    ({}, "digest_time", time(8, 0)),
    ({}, "data_dir", Path("data")),
    ({}, "imap_poll_interval", 60.0),
    # An empty variable is the same as an unset one: .env.example's "MAILBOT_IMAP_PORT=" uncommented, or a
    # container's ${VAR:-}.
    ({"MAILBOT_IMAP_PORT": ""}, "imap_port", None),
    ({"MAILBOT_HTTP_PORT": " "}, "http_port", 8080),
    ({"MAILBOT_DATA_DIR": ""}, "data_dir", Path("data")),
    ({"MAILBOT_ADMIN_EMAIL": ""}, "admin_email", None),
    ({"MAILBOT_IMAP_HOST": ""}, "imap_host", None),
    ({"MAILBOT_IMAP_PORT": " 1993 "}, "imap_port", 1993),
    # as pydantic-settings read them, so a configuration that worked still does
    ({"MAILBOT_IMAP_PORT": "1_993"}, "imap_port", 1993),
    ({"MAILBOT_IMAP_PORT": "1993.0"}, "imap_port", 1993),
    ({"MAILBOT_OFFICE_OPENS": "08:59:59.5"}, "office_opens", time(8, 59, 59, 500000)),
    ({"MAILBOT_IMAP_POLL_INTERVAL": "2.5"}, "imap_poll_interval", 2.5),
    ({"MAILBOT_IMAP_SECURITY": "STARTTLS"}, "imap_security", "starttls"),
    ({"MAILBOT_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ({"MAILBOT_LOG_LEVEL": ""}, "log_level", None),
    ({"MAILBOT_DIGEST_TIME": "off"}, "digest_time", None),
    ({"MAILBOT_DIGEST_TIME": " Never "}, "digest_time", None),
    ({"MAILBOT_DIGEST_TIME": "7:30"}, "digest_time", time(7, 30)),
    ({"MAILBOT_OFFICE_CLOSES": "17:45:30"}, "office_closes", time(17, 45, 30)),
    ({"MAILBOT_ADDRESS": " Complaints@Example.ORG "}, "address", "complaints@example.org"),
    ({"MAILBOT_PUBLIC_URL": "https://complaints.example.org/"}, "public_url", "https://complaints.example.org"),
    ({"MAILBOT_TRUST_EXCHANGE_INTERNAL": "72F988BF-86F1-41AF-91AB-2D7CD011DB47"}, "trust_exchange_internal",
     "72f988bf-86f1-41af-91ab-2d7cd011db47"),
    ({"MAILBOT_MS_CERT_FILE": "/etc/mailbot/app.pem"}, "ms_cert_file", Path("/etc/mailbot/app.pem")),
    ({"mailbot_imap_folder": "Complaints"}, "imap_folder", "Complaints"),  # the variables' case is not checked
    ({"MAILBOT_IMAP_FOLDER": "Upper", "mailbot_imap_folder": "lower"}, "imap_folder", "Upper"),  # but capitals win
])
def test_what_each_kind_of_setting_reads(variables: Callable[..., Settings], env: dict[str, str], name: str,
                                         expected: object) -> None:
    assert getattr(variables(**env), name) == expected


def test_the_variables_come_before_the_env_file_and_code_before_both(variables: Callable[..., Settings],
                                                                        tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# the deployment's settings\n"
        'MAILBOT_ORG_NAME="One Million Mentors (test)"  # quoted, with a comment after\n'
        "export MAILBOT_IMAP_FOLDER=FromTheFile\n"
        "MAILBOT_IMAP_PROCESSED_FOLDER=${FOLDER_BASE}/Done\n"
        "MAILBOT_AUTO_REPLY_CAP=3\n"
        "OTHER_PROGRAM_SETTING=ignored\n", encoding="utf-8")
    settings = variables(MAILBOT_IMAP_FOLDER="FromTheVariable", FOLDER_BASE="Archive")
    assert settings.org_name == "One Million Mentors (test)"
    assert settings.imap_folder == "FromTheVariable"
    assert settings.imap_processed_folder == "Archive/Done"
    assert settings.auto_reply_cap == 3
    given = Settings(imap_folder="FromCode", auto_reply_cap=4, data_dir=tmp_path)
    assert (given.imap_folder, given.auto_reply_cap, given.data_dir) == ("FromCode", 4, tmp_path)
    assert given.org_name == "One Million Mentors (test)"


def test_a_value_from_code_is_checked_as_a_variable_is_and_a_password_never_shown(
        variables: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"^MAILBOT_HTTP_PORT: must be at most 65535 \(got 70000\)$"):
        Settings(http_port=70000)
    with pytest.raises(ConfigError, match=r"^MAILBOT_SMTP_PASSWORD: must be text$"):
        Settings(smtp_password=12345678)
    with pytest.raises(ConfigError, match=r"^MAILBOT_AUTO_REPLY_CAP: must be set$"):
        Settings(auto_reply_cap=None)
    assert Settings(smtp_host=None, http_port=0).http_port == 0


def test_a_copy_with_changes_and_a_repr_without_secrets(variables: Callable[..., Settings]) -> None:
    settings = variables(MAILBOT_IMAP_PASSWORD="hunter2-hunter2", MAILBOT_SECRET="s" * 40)
    changed = settings.replace(imap_host=None, secret="demo-secret")
    assert (changed.secret, settings.secret) == ("demo-secret", "s" * 40)
    with pytest.raises(TypeError, match="no such setting: imap_hots"):
        settings.replace(imap_hots="mail.example.org")
    shown = repr(settings)
    assert "hunter2" not in shown and "s" * 40 not in shown
    assert "imap_password=***" in shown and "secret=***" in shown and "smtp_password=None" in shown


def test_an_env_file_that_cannot_be_read_stops_start_up_with_one_line(variables: Callable[..., Settings],
                                                                      tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"MAILBOT_ORG_NAME=Caf\xe9 Mentors\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"\.env cannot be read \(it is not UTF-8 text\): mend it, or remove it"):
        variables()


def test_every_setting_is_declared_once_as_an_attribute_and_once_as_a_row() -> None:
    assert sorted(Settings.__annotations__) == sorted(Settings.names())
    assert len(set(Settings.names())) == len(Settings.names())
