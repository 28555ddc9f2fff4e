"""Calling the site's own uc_client through PHP: for sites whose UCenter setup only PHP understands.

The bridge script is run as an argument list (no shell); argv holds only the PHP binary, a few ``-d``
options and the script's path;
the request, password included, travels on stdin as JSON, and the answer comes back on stdout.
A timeout kills the PHP process.  Under gevent the subprocess calls yield to other jobs.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import re
import subprocess
from importlib.resources import as_file, files
from pathlib import Path

from jobs.discuz import rules
from jobs.discuz.account import Credential, ForumAccount
from jobs.discuz.codes import UCENTER_REFUSALS, USERNAME_EXISTS
from jobs.discuz.errors import ForumConfigError, ForumRejected, ForumUnavailable
from jobs.discuz.mysql_errors import DUPLICATE_KEY, database_error
from jobs.sealing import Secret
from jobs.settings import required_setting, setting

BRIDGE_SCRIPT = files("jobs.discuz") / "uc_client_bridge.php"
# Production-safe PHP: errors to stderr only, and stack traces that never show call arguments.
PHP_OPTIONS = ["-d", "display_errors=stderr", "-d", "log_errors=0", "-d", "zend.exception_ignore_args=1"]


class UcClientPhpBackend:
    def __init__(self, uc_client_dir: str, config_file: str, version: str, charset: str, php: str, timeout: float):
        self.uc_client_dir = uc_client_dir
        self.config_file = config_file
        self.version = version
        self.charset = charset
        self.php = php
        self.timeout = timeout

    @classmethod
    def from_settings(cls, version: str, charset: str) -> UcClientPhpBackend:
        return cls(
            uc_client_dir=required_setting("DISCUZ_PHP_UC_CLIENT"),
            config_file=required_setting("DISCUZ_PHP_CONFIG"),
            version=version,
            charset=charset,
            php=setting("DISCUZ_PHP_BINARY", "php"),
            timeout=setting("DISCUZ_PHP_TIMEOUT", 30.0, cast=float),
        )

    def __repr__(self) -> str:
        return f"UcClientPhpBackend({self.uc_client_dir!r})"

    def holds_four_byte_utf8(self) -> bool:
        return rules.four_byte_utf8(self.version)

    def activate(self, account: ForumAccount, regip: str) -> None:
        """Nothing: only the ``database`` backend writes the forum's own member rows."""

    def get_user(self, username: str) -> ForumAccount | None:
        answer = self._run({"action": "get_user", "username": username})
        if not answer:
            return None
        try:
            uid, name, email = answer
            return ForumAccount(int(uid), str(name), str(email))
        except (TypeError, ValueError):
            raise ForumConfigError("uc_get_user gave an answer that is not (uid, username, email)") from None

    def register(self, username: str, credential: Credential, email: str, regip: str) -> int:
        if credential.password is None:
            raise ForumConfigError("uc_client needs the password, not a prepared hash")
        answer = self._run(
            {"action": "register", "username": username, "email": email, "regip": regip},
            password=credential.password,
        )
        if not isinstance(answer, int):
            raise ForumConfigError("uc_user_register gave a non-integer answer")
        return answer

    def diagnose(self, username: str) -> tuple[object, str]:
        """Look ``username`` up with PHP's errors and uc_client's output shown: (the answer, PHP's stderr).

        For a person at a terminal (``python -m jobs.discuz.uc_client_php --diagnose NAME``); the job
        never shows that text, which can quote members' data."""
        request = {"action": "get_user", "username": username, "diagnose": True}
        stdout, stderr, _ = self._exchange(request, password=None)
        try:
            reply = json.loads(stdout.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            reply = stdout.decode("utf-8", "replace")
        return reply, stderr.decode("utf-8", "replace")

    def _run(self, request: dict, password: Secret | None = None) -> object:
        stdout, stderr, returncode = self._exchange(request, password)
        return self._answer(request["action"], returncode, stdout, stderr, carried_secret=password is not None)

    def _exchange(self, request: dict, password: Secret | None) -> tuple[bytes, bytes, int]:
        request.update(uc_client=self.uc_client_dir, config=self.config_file)
        try:
            process = subprocess.Popen(
                [self.php, *PHP_OPTIONS, str(bridge_script_file())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as error:
            raise ForumConfigError(f"cannot run PHP ({self.php}): {error.strerror}") from None
        try:
            stdout, stderr = process.communicate(_request_bytes(request, password), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ForumUnavailable(f"uc_client PHP call killed after {self.timeout:g} s") from None
        except OSError as error:
            process.kill()
            process.wait()
            raise ForumUnavailable(f"the uc_client PHP call broke off: {error.strerror}") from None
        return stdout, stderr, process.returncode

    def _answer(self, action: str, returncode: int, stdout: bytes, stderr: bytes, carried_secret: bool) -> object:
        """The bridge's result, or the job's error for what it reports (codes and places, never text)."""
        reply = _first_json_value(stdout)
        if not isinstance(reply, dict):
            note = _stderr_note(stderr, carried_secret)
            raise ForumConfigError(f"uc_client PHP bridge failed: PHP exited with code {returncode}; {note}")
        if "result" in reply:
            return reply["result"]
        error = reply.get("error")
        if error == "charset":  # Python's codec took it, PHP's iconv does not (Big5 differs)
            raise ForumRejected(None, "the input has characters PHP's iconv cannot write in the forum charset")
        if error == "database":
            errno = _integer(reply.get("errno"))
            if errno == DUPLICATE_KEY and action == "register":
                return USERNAME_EXISTS  # another registration of the name won the race inside uc_client
            raise database_error(
                errno, "UCenter's database" if reply.get("where") == "ucenter" else "uc_client's database"
            )
        if error == "php":
            kind, where = _word(reply.get("kind")), f"{_path(reply.get('file'))} on line {_integer(reply.get('line'))}"
            raise ForumConfigError(f"uc_client stopped with a PHP {kind} in {where} ({DIAGNOSE_HINT})")
        if error == "silent":
            printed = _integer(reply.get("printed"))
            raise ForumConfigError(
                f"uc_client ended the script without an answer after printing {printed} bytes (not copied: it can "
                f"quote the member's data); {_stderr_note(stderr, carried_secret)}"
            )
        if error in ("unreachable", "html"):
            what = "nothing" if error == "unreachable" else "an HTML error page"
            raise ForumUnavailable(f"uc_client got {what} from UCenter's API (UC_API in DISCUZ_PHP_CONFIG)")
        if error == "refusal" and reply.get("refusal") in UCENTER_REFUSALS:
            raise ForumConfigError(
                f"UCenter refused uc_client's request: {reply['refusal']!r} "
                "(check UC_KEY, UC_APPID and the clock, in DISCUZ_PHP_CONFIG)"
            )
        if error == "not_a_result":
            raise ForumConfigError(
                f"UCenter answered uc_client with {_integer(reply.get('bytes'))} bytes that are not a result "
                "(not copied: an error page can quote the member's data; see the forum's error log)"
            )
        raise ForumConfigError(f"uc_client PHP bridge: {BRIDGE_ERRORS.get(error, 'an answer it does not know')}")


_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@functools.cache
def bridge_script_file() -> Path:
    """The bridge as a file PHP can run: the installed file itself, or, when the package is imported
    from a zip, a copy that lasts until the process exits."""
    return _extracted.enter_context(as_file(BRIDGE_SCRIPT))


DIAGNOSE_HINT = "python -m jobs.discuz.uc_client_php --diagnose NAME shows PHP's errors"
# The bridge's refusals, named from our side: its stdout is not copied either.
BRIDGE_ERRORS = {
    "config": "DISCUZ_PHP_CONFIG or DISCUZ_PHP_UC_CLIENT does not exist",
    "uc_client": "client.php does not define uc_user_register/uc_get_user",
    "request": "it did not understand the request (a bridge from another version?)",
}
_SAFE_PATH = re.compile(r"/[\w./-]{1,300}")
_SAFE_WORD = re.compile(r"[\w \\]{1,100}")


def _first_json_value(stdout: bytes) -> object:
    """The bridge's answer: the JSON value stdout starts with (anything PHP printed after it is ignored)."""
    try:
        return json.JSONDecoder().raw_decode(stdout.decode("utf-8"))[0]
    except (UnicodeDecodeError, ValueError):
        return None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _path(value: object) -> str:
    """A PHP file's path as reported by PHP itself; anything else is withheld."""
    return value if isinstance(value, str) and _SAFE_PATH.fullmatch(value) else "(a file)"


def _word(value: object) -> str:
    return value if isinstance(value, str) and _SAFE_WORD.fullmatch(value) else "error"


# "PHP Fatal error:  <message> in /path/file.php on line 12" (or ":12" in an uncaught exception's).
_PHP_DIAGNOSTIC = re.compile(
    r"^(?:PHP )?(Fatal error|Parse error|Recoverable fatal error|Warning|Notice|Deprecated):"
    r"(?:.* in (/\S+\.php)(?: on line |:)(\d+))?",
    re.MULTILINE,
)


def _stderr_note(stderr: bytes, carried_secret: bool) -> str:
    """What the job says of PHP's stderr: the kind and place of PHP's first diagnostic, never its text.

    The text is uc_client's and UCenter's (an error page, a MySQL message, a warning quoting the
    arguments): it can hold the member's data, and after a call with the password, the password in
    forms no redaction list is sure to know (``\\/`` escaping, urlencoding, base64, a hash of it).
    """
    text = stderr.decode("utf-8", errors="replace").strip()
    if not text:
        return f"PHP printed nothing ({DIAGNOSE_HINT})"
    found = _PHP_DIAGNOSTIC.search(text)
    # The place is taken only after a call without the password: a password may hold " in /x.php:1".
    where = f" in {found.group(2)} on line {found.group(3)}" if found and found.group(2) and not carried_secret else ""
    first = f"; the first is a PHP {found.group(1)}{where}" if found else ""
    why = "the call carried the password" if carried_secret else "it can quote the member's data"
    return f"PHP wrote {len(text)} characters to stderr{first}, not logged because {why} ({DIAGNOSE_HINT})"


def _request_bytes(request: dict, password: Secret | None) -> bytes:
    if password is not None:
        return json.dumps({**request, "password": password.reveal()}).encode("utf-8")
    return json.dumps(request).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.discuz.uc_client_php --diagnose NAME``: the bridge's lookup, with PHP's errors shown."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m jobs.discuz.uc_client_php",
        description="Run the uc_client bridge by hand with the job's DISCUZ_* settings, showing PHP's "
        "errors and uc_client's output (which the job never logs). It only looks a name up.",
    )
    parser.add_argument("--diagnose", metavar="NAME", required=True, help="the forum username to look up")
    args = parser.parse_args(argv)
    backend = UcClientPhpBackend.from_settings(setting("DISCUZ_UC_VERSION", "1.7"), setting("DISCUZ_CHARSET", "utf-8"))
    reply, stderr = backend.diagnose(args.diagnose)
    print(f"PHP's stderr:\n{stderr or '(nothing)'}")
    print(f"the bridge answered: {reply}")
    return 0 if isinstance(reply, dict) and "result" in reply else 1


if __name__ == "__main__":
    raise SystemExit(main())
