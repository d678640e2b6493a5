"""Is the Hub reachable? One quick verdict, cached briefly, asked before every Hub request.

Without a network a request fails slowly and rawly: urllib's own resolve has no timeout (a
resolver whose server is gone waits 5 s per try, several tries), then the retries and back-offs
of each caller add up to 20 s before "[Errno -2] Name or service not known". Here the Hub's host
(or the proxy that carries its requests) is resolved on a thread with a deadline and sent one
TCP connection; the verdict is kept a short while, so a search, its listing and a header read per
file ask the network once, and every caller that finds it offline raises :class:`OfflineError`
("You're offline — your local models still work.") at once.

``as_network_error`` turns a network exception that escaped a caller (an ``OSError``, urllib's
``URLError``, an httpx ``ConnectError``) into the same words for the front ends: no class names.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException, IncompleteRead, RemoteDisconnected
from typing import Any
from urllib.parse import urlsplit

from app.core.errors import NetworkError, OfflineError, TailorError
from app.core.hub.http import hub_endpoint

# huggingface_hub.constants: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) in ENV_VARS_TRUE_VALUES
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})
# A working resolver answers from its cache in microseconds and from the network in tens of ms;
# one that takes a second has no server to ask (glibc then waits 5 s per try: resolv.conf(5)).
RESOLVE_TIMEOUT_S = 1.0
# A TCP handshake is one round trip: ~100-300 ms across the world, 600 ms over a satellite link.
CONNECT_TIMEOUT_S = 1.0
# Our choice, not a standard: long enough that one user action (a search, a listing, a header
# read per file: a few seconds) probes once; short enough that a dropped link is noticed on the
# next action. A failure is kept shorter, so coming back online is seen within 10 s — and an
# explicit Retry asks afresh (``fresh=True``).
ONLINE_TTL_S = 30.0
OFFLINE_TTL_S = 10.0
_OFFLINE_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EHOSTDOWN})
_NETWORK_ERRNOS = _OFFLINE_ERRNOS | {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                                     errno.ETIMEDOUT, errno.EPIPE}  # fmt: skip
# the third-party HTTP clients whose exceptions may reach a front end (huggingface_hub's httpx)
_CLIENT_MODULES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"})
OFFLINE_SENTENCE = "You're offline — your local models still work."


@dataclass(frozen=True)
class Verdict:
    """What one probe found: ``online``, the ``host`` it tried (``host`` or ``host:port``), and
    when it failed, the ``reason`` in words."""

    online: bool
    host: str
    reason: str
    checked_at_s: float  # time.monotonic()

    def error(self) -> OfflineError:
        if self.reason == "HF_HUB_OFFLINE":
            return OfflineError(OFFLINE_SENTENCE, hint="HF_HUB_OFFLINE is set, so TailorLM (like huggingface_hub) "
                                "stays off the Hub; unset it to search and download.")  # fmt: skip
        return OfflineError(OFFLINE_SENTENCE, hint=f"Cannot reach {self.host} ({self.reason}); searching and "
                            "downloading work again once you're connected.")  # fmt: skip


_cache: dict[tuple[str, int], Verdict] = {}
_probe_lock = threading.Lock()  # one probe at a time: concurrent callers share its verdict


def offline_by_setting() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``), read as huggingface_hub reads it."""
    return any((os.environ.get(name) or "").upper() in TRUE_VALUES for name in OFFLINE_ENV)


def hub_verdict(url: str | None = None, *, fresh: bool = False) -> Verdict:
    """Whether ``url``'s host (default: the Hub, ``HF_ENDPOINT``) accepts a connection now; the
    cached verdict when it is recent enough, unless ``fresh``. At most ~2 s, usually far less."""
    asked_at = time.monotonic()
    target = _target(url or hub_endpoint())
    if offline_by_setting():
        return Verdict(False, _shown(*target), "HF_HUB_OFFLINE", asked_at)
    with _probe_lock:
        known = _cache.get(target)
        if known is not None and (_recent(known) if not fresh else known.checked_at_s >= asked_at):
            return known  # fresh: another caller probed while this one waited for the lock
        verdict = _probe(*target)
        _cache[target] = verdict
        return verdict


def require_online(url: str | None = None) -> None:
    """Raise :class:`OfflineError` when ``url``'s host (default: the Hub) cannot be reached."""
    verdict = hub_verdict(url)
    if not verdict.online:
        raise verdict.error()


def forget() -> None:
    """Drop every cached verdict (a Retry, a test's fresh server): the next call probes."""
    with _probe_lock:
        _cache.clear()


def request_failed(exc: BaseException, what: str, url: str, *, timeout_s: float | None = None) -> TailorError:
    """The error for a request to ``url`` that failed with the network exception ``exc``: asks
    afresh whether the host is reachable at all — :class:`OfflineError` if not — else a
    :class:`NetworkError` that says what happened, in words."""
    verdict = hub_verdict(url, fresh=True)
    if not verdict.online:
        return verdict.error()
    if _is_timeout(_root_cause(exc)) and timeout_s is not None:  # urllib wraps a connect timeout
        return NetworkError(f"The Hub did not answer within {timeout_s:g} s ({what}).",
                            hint="Check the connection and try again.")  # fmt: skip
    return NetworkError(f"The connection to the Hub failed ({what}): {reason_in_words(exc)}.",
                        hint="Check the connection and try again.")  # fmt: skip


def as_network_error(exc: BaseException) -> TailorError | None:
    """A network exception that escaped as itself, in words (for the front ends' last resort);
    None when ``exc`` is not about the network. Never probes: it may run on the GUI thread."""
    if isinstance(exc, TailorError) or not _is_network(exc):
        return None
    root = _root_cause(exc)
    if isinstance(root, socket.gaierror) or (isinstance(root, OSError) and root.errno in _OFFLINE_ERRNOS):
        return OfflineError(OFFLINE_SENTENCE, hint=f"A server could not be reached ({reason_in_words(root)}); "
                            "searching and downloading work again once you're connected.")  # fmt: skip
    return NetworkError(f"A network request failed: {reason_in_words(root)}.",
                        hint="Check the connection and try again.")  # fmt: skip


def reason_in_words(exc: BaseException) -> str:
    """What a network exception means, without its class name."""
    exc = _root_cause(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered {exc.code}"
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return "no name server answered"
        return "the host name does not resolve"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its certificate could not be verified"
    if isinstance(exc, ssl.SSLError):
        return "the secure connection failed"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, RemoteDisconnected):
        return "the server closed the connection"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "the connection was dropped"
    if isinstance(exc, IncompleteRead):
        return "the answer was cut short"
    if _is_timeout(exc):
        return "it timed out"
    if isinstance(exc, OSError) and exc.errno in _OFFLINE_ERRNOS:
        return "there is no route to it (no network?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return "a network error"


# --- the probe -------------------------------------------------------------------------------


def _target(url: str) -> tuple[str, int]:
    """(host, port) a request to ``url`` connects to: the proxy's when one carries it (urllib's
    own rules: ``*_proxy`` and ``no_proxy``), else the URL's."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port out of range: the request fails the same way
        port = 443 if parts.scheme == "https" else 80
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return host, port


def _shown(host: str, port: int) -> str:
    return host if port in (80, 443) else f"{host}:{port}"


def _recent(v: Verdict) -> bool:
    return time.monotonic() - v.checked_at_s < (ONLINE_TTL_S if v.online else OFFLINE_TTL_S)


def _probe(host: str, port: int) -> Verdict:
    """Resolve ``host`` within RESOLVE_TIMEOUT_S, then connect to its addresses within
    CONNECT_TIMEOUT_S in all."""
    now = time.monotonic
    try:
        addresses = resolve(host, port, timeout_s=RESOLVE_TIMEOUT_S)
    except TimeoutError:
        return Verdict(
            False, _shown(host, port), f"its name did not resolve within {RESOLVE_TIMEOUT_S:g} s", now()
        )
    except OSError as exc:
        return Verdict(False, _shown(host, port), reason_in_words(exc), now())
    deadline = now() + CONNECT_TIMEOUT_S
    failure: OSError = TimeoutError()
    for family, kind, proto, _, address in addresses:
        left = deadline - now()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
            return Verdict(True, _shown(host, port), "", now())
        except OSError as exc:
            failure = exc
    reason = (
        f"no connection within {CONNECT_TIMEOUT_S:g} s" if _is_timeout(failure) else reason_in_words(failure)
    )
    return Verdict(False, _shown(host, port), reason, now())


def resolve(host: str, port: int, *, timeout_s: float) -> list[Any]:
    """``socket.getaddrinfo`` with a deadline (it has none of its own): on a daemon thread, so a
    resolver that hangs is left behind rather than waited for — or waited for at exit."""
    if not host:
        raise socket.gaierror(socket.EAI_NONAME, "no host name")
    answer: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"{host} did not resolve within {timeout_s:g} s")
    result = answer[0]
    if isinstance(result, OSError):
        raise result
    return list(result)


# --- recognising network exceptions ----------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen and len(seen) < 16:
        seen.append(e)
        nested = getattr(e, "reason", None) if isinstance(e, urllib.error.URLError) else None
        e = nested if isinstance(nested, BaseException) else (e.__cause__ or e.__context__)
    return seen


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost OSError of ``exc``'s chain (urllib's ``reason``, httpx's ``__cause__``)."""
    chain = _chain(exc)
    return next((e for e in reversed(chain) if isinstance(e, OSError)), exc)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _is_network(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, socket.gaierror | ConnectionError | TimeoutError | ssl.SSLError
                      | urllib.error.URLError | HTTPException):  # fmt: skip
            return True
        if isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS:
            return True
        if any(c.__module__.split(".")[0] in _CLIENT_MODULES for c in type(e).__mro__):
            return True
    return False
