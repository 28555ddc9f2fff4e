"""UCenter's HTTP API, as uc_client's default "post" mode speaks it, over a pooled urllib3 client.

One ``urllib3.PoolManager`` per worker process and per distinct HTTP settings (timeout, pool size, CA
file) keeps connections to UCenter alive across jobs, so a busy worker does not pay a TCP connect and
a TLS handshake for every call.  urllib3 uses the ``socket`` and ``ssl`` modules, which the worker has
patched with gevent's, so a slow forum blocks only the job waiting on it.  The pool holds at most
``DISCUZ_HTTP_POOL_SIZE`` connections (50) and blocks: with more concurrent jobs than that, a job waits
up to ``DISCUZ_HTTP_TIMEOUT`` for a free connection instead of opening sockets without bound.

Nothing is resent by urllib3 (``retries=False``): a ``register`` POST that may have reached UCenter must
never be sent twice behind the job's back.  The job retries transient failures itself, with backoff,
starting again from the lookup (:func:`jobs.outcomes.retry_later`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import time
from typing import NamedTuple
from urllib.parse import urlencode
from xml.etree.ElementTree import ParseError

import urllib3
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree
from urllib3.exceptions import EmptyPoolError, LocationValueError, MaxRetryError

from jobs.discuz import authcode, php, rules
from jobs.discuz.account import Credential, ForumAccount
from jobs.discuz.codes import UCENTER_REFUSALS, USERNAME_EXISTS
from jobs.discuz.errors import ForumConfigError, ForumUnavailable
from jobs.discuz.mysql_errors import DUPLICATE_KEY, database_error
from jobs.sealing import Secret
from jobs.settings import SettingsError, required_setting, setting

USER_AGENT = "rq-gevent-jobs uc_client/1.0"
RELEASES = {"1.6": "20170101", "1.7": "20240520"}
CONFIG_HINT = "check UC_KEY, UC_APPID, DISCUZ_UC_VERSION and the clock"
DEFAULT_TIMEOUT = 15.0
DEFAULT_POOL_SIZE = 50  # a worker's -c 50 jobs, each holding at most one connection at a time
_INTEGER = re.compile(rb"-?\d+")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# The end of uc_server's database error page (lib/db.class.php / dbi.class.php ``halt()``, which
# ``exit()``s with it): "...<b>Error:</b>{MySQL's message}<br /><b>Errno:</b>{number}<br />".  Only the
# number is read; the message and the SQL before it quote the member.
_HALT_ERROR = b"<b>Error:</b>"
_HALT_ERRNO = re.compile(rb"<br /><b>Errno:</b>(\d{1,5})<br />\Z")

log = logging.getLogger(__name__)


class HttpSettings(NamedTuple):
    """What a connection pool is built from; equal settings share one pool in a process."""

    timeout: float
    pool_size: int
    ca_file: str | None


class UCenterHttpBackend:
    """uc_client's ``user/get_user`` and ``user/register`` calls, sealed with ``UC_KEY``, over the pool."""

    def __init__(
        self,
        api_url: str,
        key: str,
        appid: str,
        version: str,
        charset: str,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        ca_file: str | None = None,
    ):
        try:
            address = urllib3.util.parse_url(api_url)
        except LocationValueError:
            address = None
        if address is None or address.scheme not in ("http", "https") or not address.host:
            raise ForumConfigError("UC_API must be an http:// or https:// address")
        if not timeout > 0 or pool_size < 1:
            raise SettingsError("DISCUZ_HTTP_TIMEOUT must be above 0 and DISCUZ_HTTP_POOL_SIZE at least 1")
        self.api_url = api_url.rstrip("/") + "/index.php"
        self._key = key
        self.appid = str(appid)
        self.version = version
        self.charset = charset
        self.http = HttpSettings(float(timeout), int(pool_size), ca_file or None)

    @classmethod
    def from_settings(cls, version: str, charset: str) -> UCenterHttpBackend:
        """The backend configured by ``UC_API``, ``UC_KEY``, ``UC_APPID`` and the ``DISCUZ_HTTP_*`` settings."""
        return cls(
            api_url=required_setting("UC_API"),
            key=required_setting("UC_KEY"),
            appid=required_setting("UC_APPID"),
            version=version,
            charset=charset,
            timeout=setting("DISCUZ_HTTP_TIMEOUT", DEFAULT_TIMEOUT, cast=float),
            pool_size=setting("DISCUZ_HTTP_POOL_SIZE", DEFAULT_POOL_SIZE, cast=int),
            ca_file=setting("DISCUZ_HTTP_CA_FILE") or None,
        )

    def __repr__(self) -> str:
        return f"UCenterHttpBackend({self.api_url!r}, appid={self.appid!r}, version={self.version!r})"

    def holds_four_byte_utf8(self) -> bool:
        return rules.four_byte_utf8(self.version)

    def activate(self, account: ForumAccount, regip: str) -> None:
        """Nothing: only the ``database`` backend writes the forum's own member rows."""

    def get_user(self, username: str) -> ForumAccount | None:
        """The member named ``username``, or None when UCenter has none."""
        answer = self._call("user", "get_user", [("username", self._as_discuz_passes(username)), ("isuid", "0")])
        if answer.strip() == b"0":
            return None
        return self._parse_account(answer)

    def register(self, username: str, credential: Credential, email: str, regip: str) -> int:
        """The new uid, or UCenter's negative code; a duplicate-key failure of UCenter's own database
        (another registration of the name won the race inside UCenter) is "the username exists"."""
        if credential.password is None:
            raise ForumConfigError("the UCenter HTTP API needs the password, not a prepared hash")
        fields = [
            ("username", self._as_discuz_passes(username)),
            ("password", credential.password),
            ("email", email),
            ("questionid", ""),
            ("answer", ""),
            ("regip", regip),
        ]
        answer = self._call("user", "register", fields).strip()
        if not _INTEGER.fullmatch(answer):
            if database_errno(answer) == DUPLICATE_KEY:
                log.info("UCenter's database refused a duplicate member (MySQL %d): looking the name up", DUPLICATE_KEY)
                return USERNAME_EXISTS
            raise self._unexpected(answer)
        return int(answer)

    def _as_discuz_passes(self, username: str) -> bytes:
        """Escaped as Discuz! escapes it (uc_server strips one level): ``ro\\ot`` stays ``ro\\ot``."""
        return php.as_discuz_passes(username, self.charset)

    def _call(self, module: str, action: str, fields: list[tuple[str, str | bytes | Secret]]) -> bytes:
        body = urlencode(
            {
                "m": module,
                "a": action,
                "inajax": "2",
                "release": RELEASES[self.version],
                "input": self._sealed_input(module, action, fields),
                "appid": self.appid,
            }
        ).encode("ascii")
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            # No redirect is followed: uc_client posts to UC_API itself, and a redirected POST loses its body.
            response = pool_for(self.http).request(
                "POST", self.api_url, body=body, headers=headers, redirect=False, pool_timeout=self.http.timeout
            )
        except EmptyPoolError:
            raise ForumUnavailable(
                f"no free connection to UCenter within {self.http.timeout:g} s "
                f"(DISCUZ_HTTP_POOL_SIZE={self.http.pool_size} are all in use)"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as error:
            raise _connection_failure(error) from None
        if response.status >= 500:
            raise ForumUnavailable(f"UCenter answered HTTP {response.status}")
        if response.status >= 300:
            raise ForumConfigError(f"UCenter answered HTTP {response.status}: check UC_API")
        answer = response.data
        if not answer.strip():
            raise ForumUnavailable("UCenter answered with an empty body")
        return answer

    def _sealed_input(self, module: str, action: str, fields: list[tuple[str, str | bytes | Secret]]) -> str:
        """The authcode token; plaintext exists only inside this frame, which does no I/O."""
        agent = hashlib.md5(USER_AGENT.encode("ascii"), usedforsecurity=False).hexdigest()
        plain = urlencode([(name, _encoded(value, self.charset)) for name, value in fields])
        plain += f"&m={module}&a={action}&appid={self.appid}&agent={agent}&time={int(time.time())}"
        return authcode.encode(plain.encode("ascii"), self._key)

    def _parse_account(self, answer: bytes) -> ForumAccount:
        """get_user's ``<root><item id="0">uid</item>...`` document; a DTD or an entity (an entity
        expansion bomb, an external file) is refused like any other answer that is not a result."""
        try:
            text = _XML_DECLARATION.sub("", answer.decode(self.charset))
            root = SafeElementTree.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
            items = {item.get("id"): (item.text or "") for item in root.iter("item")}
            return ForumAccount(int(items["0"]), items["1"], items["2"])
        except (UnicodeDecodeError, ParseError, DefusedXmlException, KeyError, ValueError):
            raise self._unexpected(answer) from None

    def _unexpected(self, answer: bytes) -> Exception:
        """A non-protocol answer: uc_server's database error page is named by its MySQL error number, an
        HTML error page is a hiccup, UCenter's own refusals are configuration.

        None of the answer's text is copied into the error: a forum's error page or PHP warning quotes
        the member's data (``Duplicate entry 'alice'``) in forms no redaction is sure to catch (case,
        HTML escaping, the forum charset).  UCenter's own refusals are recognised and named from our list.
        """
        errno = database_errno(answer)
        if errno is not None:
            return database_error(errno, "UCenter's database")
        text = answer.strip()
        if text.lower().startswith((b"<!doctype", b"<html")):
            return ForumUnavailable("UCenter answered with an HTML page instead of a result")
        refusal = next((known for known in UCENTER_REFUSALS if text == known.encode("ascii")), None)
        if refusal is not None:
            return ForumConfigError(f"UCenter refused the request: {refusal!r} ({CONFIG_HINT})")
        return ForumConfigError(
            f"UCenter answered {len(answer)} bytes that are not a result (not copied: an error page can quote "
            f"the member's data; {CONFIG_HINT}, and the forum's own error log)"
        )


def database_errno(answer: bytes) -> int | None:
    """The MySQL error number of uc_server's database error page, or None when ``answer`` is not one.

    uc_server answers HTTP 200 with that page when its own query fails (its table prefix replaced by
    ``[Table]``; a PHP warning may come first).  Only the trailing number is read: the rest quotes the
    SQL, with the member's username and e-mail, and MySQL's message, and is never copied anywhere.
    """
    text = answer.rstrip()
    match = _HALT_ERRNO.search(text, max(0, len(text) - 64))  # the tail only: linear in the page's size
    if match is None or _HALT_ERROR not in text[: match.start()]:
        return None
    return int(match.group(1))


def _connection_failure(error: BaseException) -> ForumUnavailable | ForumConfigError:
    """What went wrong on the way, named by the error's type and the local system's own words only.

    The messages of urllib3's and http.client's exceptions can hold bytes the remote sent (a malformed
    status line, a header), so only the innermost cause's type and an OS error's ``strerror`` are used.
    """
    if isinstance(error, LocationValueError):
        return ForumConfigError("UC_API is not a usable address")
    cause = _innermost(error)
    if isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError):  # connect, TLS handshake or read
        return ForumUnavailable("UCenter unreachable: TimeoutError: timed out")
    if isinstance(cause, http.client.HTTPException | urllib3.exceptions.HTTPError) and not isinstance(cause, OSError):
        return ForumUnavailable(f"UCenter's HTTP answer is malformed ({type(cause).__name__})")
    detail = f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else ""
    return ForumUnavailable(f"UCenter unreachable: {type(cause).__name__}{detail}")


def _innermost(error: BaseException) -> BaseException:
    """The exception urllib3 wrapped (a ``ProtocolError`` around a reset, an ``SSLError`` around a failed
    verification, a ``NewConnectionError`` raised from a refused connect), else ``error`` itself."""
    for _ in range(5):
        if isinstance(error, MaxRetryError) and error.reason is not None:
            error = error.reason
        elif isinstance(error, urllib3.exceptions.HTTPError) and not (
            isinstance(error, urllib3.exceptions.TimeoutError)
            and not isinstance(error, urllib3.exceptions.NewConnectionError)
        ):
            wrapped = next((arg for arg in error.args if isinstance(arg, BaseException)), None) or error.__cause__
            if wrapped is None:
                break
            error = wrapped
        else:
            break
    return error


_pools: dict[HttpSettings, urllib3.PoolManager] = {}
_pools_pid = os.getpid()


def pool_for(settings: HttpSettings) -> urllib3.PoolManager:
    """This process's connection pool for ``settings``, made at first use.

    A forked child starts with none: the parent's sockets are not its to share.
    """
    global _pools_pid
    if _pools_pid != os.getpid():
        _pools.clear()
        _pools_pid = os.getpid()
    pool = _pools.get(settings)
    if pool is None:
        pool = _pools[settings] = urllib3.PoolManager(
            num_pools=4,  # UC_API names one host; a few in case a config module changes it
            maxsize=settings.pool_size,
            block=True,
            timeout=urllib3.Timeout(connect=settings.timeout, read=settings.timeout),
            retries=False,
            ssl_context=ssl.create_default_context(cafile=settings.ca_file),
        )
    return pool


def _encoded(value: str | bytes | Secret, charset: str) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value.reveal() if isinstance(value, Secret) else value).encode(charset)
