"""UCenter's HTTP API, as uc_client's default "post" mode speaks it."""

from __future__ import annotations

import hashlib
import http.client
import re
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from urllib.parse import urlencode

from jobs.discuz import authcode, php, rules
from jobs.discuz.account import Credential, ForumAccount
from jobs.discuz.errors import ForumConfigError, ForumUnavailable
from jobs.sealing import Secret
from jobs.settings import required_setting, setting

USER_AGENT = "rq-gevent-jobs uc_client/1.0"
RELEASES = {"1.6": "20170101", "1.7": "20240520"}
CONFIG_HINT = "check UC_KEY, UC_APPID, DISCUZ_UC_VERSION and the clock"
# UCenter's own answers to a request it will not serve (uc_server's index.php and control/*.php).
UCENTER_REFUSALS = (
    "Invalid input",
    "Access denied for agent changed",
    "Authorization has expired",
    "Access denied for operation changed",
    "Access denied for application",
    "Invalid operation",
)
_INTEGER = re.compile(rb"-?\d+")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class UCenterHttpBackend:
    def __init__(self, api_url: str, key: str, appid: str, version: str, charset: str, timeout: float = 15.0):
        self.api_url = api_url.rstrip("/") + "/index.php"
        self._key = key
        self.appid = str(appid)
        self.version = version
        self.charset = charset
        self.timeout = timeout

    @classmethod
    def from_settings(cls, version: str, charset: str) -> UCenterHttpBackend:
        return cls(
            api_url=required_setting("UC_API"),
            key=required_setting("UC_KEY"),
            appid=required_setting("UC_APPID"),
            version=version,
            charset=charset,
            timeout=setting("DISCUZ_HTTP_TIMEOUT", 15.0, cast=float),
        )

    def __repr__(self) -> str:
        return f"UCenterHttpBackend({self.api_url!r}, appid={self.appid!r}, version={self.version!r})"

    def holds_four_byte_utf8(self) -> bool:
        return rules.four_byte_utf8(self.version)

    def get_user(self, username: str) -> ForumAccount | None:
        answer = self._call("user", "get_user", [("username", self._as_discuz_passes(username)), ("isuid", "0")])
        if answer.strip() == b"0":
            return None
        return self._parse_account(answer)

    def register(self, username: str, credential: Credential, email: str, regip: str) -> int:
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
        request = urllib.request.Request(
            self.api_url,
            data=body,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as error:
            if error.code >= 500:
                raise ForumUnavailable(f"UCenter answered HTTP {error.code}") from None
            raise ForumConfigError(f"UCenter answered HTTP {error.code}: check UC_API") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
            raise ForumUnavailable(f"UCenter unreachable: {type(reason).__name__}: {detail}") from None
        except http.client.HTTPException as error:  # its message can hold the remote's own bytes
            raise ForumUnavailable(f"UCenter's HTTP answer is malformed ({type(error).__name__})") from None
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
        try:
            text = _XML_DECLARATION.sub("", answer.decode(self.charset))
            items = {item.get("id"): (item.text or "") for item in ElementTree.fromstring(text).iter("item")}
            return ForumAccount(int(items["0"]), items["1"], items["2"])
        except (UnicodeDecodeError, ElementTree.ParseError, KeyError, ValueError):
            raise self._unexpected(answer) from None

    def _unexpected(self, answer: bytes) -> Exception:
        """A non-protocol answer: an HTML error page is a hiccup, UCenter's own refusals are configuration.

        None of the answer's text is copied into the error: a forum's error page or PHP warning quotes
        the member's data (``Duplicate entry 'alice'``) in forms no redaction is sure to catch (case,
        HTML escaping, the forum charset).  UCenter's own refusals are recognised and named from our list.
        """
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


def _encoded(value: str | bytes | Secret, charset: str) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value.reveal() if isinstance(value, Secret) else value).encode(charset)
