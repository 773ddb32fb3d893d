"""Who may call the API: loopback rules, the bad-credential throttle and the cross-site checks.

The middleware that applies them is in app.py; tokens and sessions are in tokens.py.
"""

import ipaddress
import time
from collections import OrderedDict, deque
from urllib.parse import urlsplit

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host):
    """True for names and addresses that only this machine reaches: localhost, 127.0.0.0/8, ::1."""
    host = (host or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(netloc):
    """'example.org:8080' -> 'example.org', '[::1]:80' -> '::1'."""
    return urlsplit("//" + (netloc or "")).hostname or ""


def cross_site_reason(request):
    """Why a state-changing request looks like it comes from another site's page, or None.

    Browsers send `Sec-Fetch-Site` and `Origin` with every cross-origin POST/PUT/DELETE; a page of this
    service (same origin) and a non-browser client (the CLI, curl) pass."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return "cross-site request refused (Sec-Fetch-Site: %s)" % fetch_site
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.netloc.lower() != (request.host or "").lower():
            return "cross-site request refused (Origin %s is not this service)" % origin
    return None


class Throttle:
    """Refuses credentials from an address that presented `limit` bad ones within `window` seconds, until the
    oldest of them is older than the window: at most `limit` guesses a minute per address, and an answer that
    says so (429 + Retry-After) instead of a silent delay. Bounded: the `max_addresses` most recent offenders."""

    def __init__(self, limit=5, window=60.0, max_addresses=10000, clock=time.monotonic):
        self.limit, self.window, self.max_addresses, self.clock = limit, window, max_addresses, clock
        self._failures = OrderedDict()   # address -> deque of monotonic times

    def _recent(self, address):
        times = self._failures.get(address)
        if times is None:
            return None
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address):
        """Seconds until `address` may try again, 0 when it may now."""
        times = self._recent(address)
        if times is None or len(times) < self.limit:
            return 0
        return max(1, int(times[0] + self.window - self.clock()) + 1)

    def failed(self, address):
        times = self._recent(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
