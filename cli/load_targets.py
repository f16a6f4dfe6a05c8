"""What `djtrace load` sends: weighted paths, the recent mix from the store, a logged-in user."""

from __future__ import annotations

import http.cookiejar
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

from djtrace.cli.errors import CliError
from djtrace.exporters.store import Filters, StoreError, TraceStore
from djtrace.lab.engine import Target
from djtrace.lab.tag import HEADER_KEY
from djtrace.redact import REDACTED, is_sensitive

#: Headers a replayed request never copies: the connection's own, and the client's identity.
_SKIP_HEADERS = {
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "cookie",
    "authorization", "proxy-authorization", "user-agent", "accept-encoding", "upgrade",
    "x-request-id", HEADER_KEY,
}  # fmt: skip
PASSWORD_ENV = "DJTRACE_LOAD_PASSWORD"
_WEIGHT = re.compile(r"^(?P<path>.+?)=(?P<weight>\d+(?:\.\d+)?)$")


def parse_weighted(item: str) -> tuple[str, float]:
    """`/api/books/=3` → ('/api/books/', 3.0); a plain path weighs 1.

    In a query string the last `=` belongs to its last parameter unless there are two:
    `/books/?page=2` weighs 1, `/books/?page=2=3` weighs 3.
    """
    path, sep, query = item.partition("?")
    if sep and query.rsplit("&", 1)[-1].count("=") < 2:
        return item, 1.0
    match = _WEIGHT.match(item)
    if match is None:
        return item, 1.0
    weight = float(match["weight"])
    if weight <= 0:
        raise CliError(f"{item!r}: a weight must be above 0")
    return match["path"], weight


def from_store(store: TraceStore, limit: int = 1000) -> list[Target]:
    """The recent mix of captured GET/HEAD requests, weighted by how often each was seen.

    Load runs' own requests are left out; so are headers naming the client or carrying
    secrets (what the tracer redacted stays out).
    """
    try:
        rows = store.summaries(Filters(), sort="time", limit=limit)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    counts: Counter[tuple[str, str]] = Counter()
    first_id: dict[tuple[str, str], str] = {}
    for row in rows:
        method = (row.method or "").upper()
        if method not in ("GET", "HEAD") or not row.path:
            continue
        key = (method, row.path + (f"?{row.query}" if row.query else ""))
        if REDACTED in key[1]:
            continue  # a query with a secret in it cannot be replayed as it was
        counts[key] += 1
        first_id.setdefault(key, row.id)
    targets = []
    for (method, path), count in counts.most_common(50):
        try:
            trace = store.get(first_id[(method, path)])
        except StoreError:
            continue
        if trace.request.get("load") or HEADER_KEY in (trace.request.get("headers") or {}):
            continue
        headers = {
            name: value
            for name, value in (trace.request.get("headers") or {}).items()
            if isinstance(value, str)
            and name not in _SKIP_HEADERS
            and value != REDACTED
            and not is_sensitive(name)
        }
        targets.append(Target(method, path, float(count), headers))
    if not targets:
        raise CliError(
            f"no captured GET requests to replay in {store.path} (--from-store replays the "
            "recent mix of what `djtrace capture` recorded)"
        )
    return targets


def log_in(base_url: str, login_path: str, username: str) -> dict[str, str]:
    """Log in once through the site's login form; the session cookies to load with.

    The password comes from $DJTRACE_LOAD_PASSWORD (never from the command line, where
    other users of the machine could read it).
    """
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise CliError(f"--user {username}: set {PASSWORD_ENV} to the user's password")
    jar = http.cookiejar.CookieJar()

    class _Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None  # the login's redirect is the answer; do not follow it

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar), _Keep
    )
    url = base_url + login_path
    try:
        with opener.open(url, timeout=30) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"--user: cannot open the login page {url}: {exc}") from None
    csrf = next((c.value for c in jar if c.name == "csrftoken"), "")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
    ).encode()
    request = urllib.request.Request(url, data=form, headers={"Referer": url})
    status = 0
    try:
        with opener.open(request, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"--user: the login at {url} failed: {exc}") from None
    cookies = {c.name: c.value for c in jar}
    if status not in (301, 302, 303) or "sessionid" not in cookies:
        raise CliError(
            f"--user {username}: logging in at {url} did not work (status {status}); check "
            f"the user name, {PASSWORD_ENV}, and --login-url"
        )
    return cookies
