"""The file a SQLite database URL names, the one rule every part that touches the file follows.

The database itself, its privacy (0600), the writers' turns across processes, the instance lock and the
migration lock beside it, the backup and the error messages all need the same answer. Each once read the URL
its own way, and a URL naming the file as an SQLite URI (``sqlite:///file:data/mailbot.db?uri=true``, which
MAILBOT_DATABASE_URL accepts as any SQLAlchemy URL does) was opened by SQLite as ``data/mailbot.db`` but locked
as ``file:data/mailbot.db.migrate.lock``, a folder that did not exist, so `db upgrade` failed, and the file
it had just made was not made private.

A database starting with ``file:`` is read as SQLite reads a URI filename (https://www.sqlite.org/uri.html):
an optional ``//`` authority (empty or ``localhost``), then the path, percent-decoded, then a query and a
fragment. It is read that way with or without ``uri=true``: Debian's SQLite is built to read every such name as
a URI. Pure: nothing here touches the disk.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url


def database_file(url: str | URL) -> Path | None:
    """The file of a SQLite database URL, as SQLite will open it (relative to the working directory where the
    URL's path is relative); None for another database, an in-memory one, or a temporary one (``file:``)."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if database and database.startswith("file:"):
        # The URL's own parameters go on to SQLite with the URI's (SQLAlchemy appends them), mode=memory among them.
        database, modes = _uri_path(database)
        if "memory" in (*modes, *url.normalized_query.get("mode", ())):
            return None
    if not database or database == ":memory:":
        return None
    return Path(database)


def _uri_path(uri: str) -> tuple[str, list[str]]:
    """A URI filename's path, percent-decoded, and the ``mode`` values of its query."""
    rest, _, query = uri[len("file:"):].split("#", 1)[0].partition("?")
    if rest.startswith("//"):  # the authority ("" or "localhost": SQLite refuses any other) ends at the path's "/"
        _authority, slash, path = rest[2:].partition("/")
        rest = slash + path
    modes = [value for key, _, value in (pair.partition("=") for pair in query.split("&")) if key == "mode"]
    return unquote(rest, errors="replace"), modes
