"""The ``sync_discuz_user`` job: the website's new user gets the same account in the forum, once."""

from __future__ import annotations

import logging

from rq import Retry

from jobs.discuz import rules
from jobs.discuz.account import Credential, ForumAccount
from jobs.discuz.backend import ForumBackend, backend_from_settings
from jobs.discuz.codes import EMAIL_EXISTS, USERNAME_EXISTS
from jobs.discuz.errors import ForumConflict, ForumRejected
from jobs.discuz.serialise import one_sync_per_member
from jobs.outcomes import PermanentError, TransientError, retry_later
from jobs.sealing import Sealed, erase_from_current_job, takes_secrets
from jobs.settings import boolean, setting
from rq_gevent import sensitive

log = logging.getLogger(__name__)
PASSWORD_MAX = 1024  # characters; uc_client's authcode is pure Python RC4 here, about 1 s per MB


@sensitive  # error reports must not carry the account it creates (the password is sealed anyway)
@takes_secrets("password", "password_hash")  # arguments that do not fit leave no plaintext in the job
def sync_discuz_user(
    username: str,
    email: str,
    password: Sealed | None = None,
    *,
    password_hash: Sealed | None = None,
    regip: str = "",
) -> dict | Retry:
    """Create ``username`` in Discuz!/UCenter with ``email`` and a sealed password (or sealed prepared hash).

    Succeeds when the account is created or already exists with the same e-mail; fails without retry
    on a rejected input, a name owned by someone else, or a configuration error; retries with backoff
    when the forum is unreachable.  Returns ``{"uid", "username", "created"}``.
    """
    backend = backend_from_settings()
    credential = _credential(password, password_hash, backend.charset)
    try:
        _check_inputs(username, email, regip, backend)
        with one_sync_per_member(username, email):
            return _sync(backend, username, email, credential, regip)
    except TransientError as error:
        return retry_later(error)


def _sync(backend: ForumBackend, username: str, email: str, credential: Credential, regip: str) -> dict:
    existing = backend.get_user(username)
    if existing is not None:
        return _already_there(backend, existing, email, regip)
    _refuse_a_password_the_forum_cannot_use(credential, backend)  # after the lookup: a rerun still succeeds
    code = backend.register(username, credential, email, regip)
    if code > 0:
        log.info("created forum user uid=%d", code)
        return {"uid": code, "username": username, "created": True}
    if code == USERNAME_EXISTS:
        existing = backend.get_user(username)
        if existing is None:
            raise TransientError("UCenter says the username exists but cannot find it yet")
        return _already_there(backend, existing, email, regip)
    if code == EMAIL_EXISTS:
        raise ForumConflict("the e-mail address already belongs to another forum account")
    raise ForumRejected(code)


def _already_there(backend: ForumBackend, account: ForumAccount, email: str, regip: str) -> dict:
    if account.email.strip().lower() != email.strip().lower():
        raise ForumConflict(
            f"the forum username belongs to another account (uid {account.uid}, a different e-mail); left untouched"
        )
    backend.activate(account, regip)
    return {"uid": account.uid, "username": account.username, "created": False}


def _credential(password: object, password_hash: object, charset: str) -> Credential:
    """The opened credential; ``takes_secrets`` has already refused an unsealed one."""
    if (password is None) == (password_hash is None):
        erase_from_current_job(*(value for value in (password, password_hash) if value is not None))
        raise PermanentError("pass exactly one of password= or password_hash=")
    password, password_hash = Sealed.of(password), Sealed.of(password_hash)
    if password is not None:
        secret = password.open()
        if len(secret.reveal()) > PASSWORD_MAX:
            raise PermanentError(f"the password has {len(secret.reveal())} characters; at most {PASSWORD_MAX}")
        if not _encodable(secret.reveal(), charset):
            raise PermanentError(f"the password has characters the forum charset {charset} cannot store")
        return Credential(password=secret)
    return Credential(prepared_hash=password_hash.open())


def _refuse_a_password_the_forum_cannot_use(credential: Credential, backend: ForumBackend) -> None:
    if credential.password is None:
        return
    allowed = setting("DISCUZ_ALLOW_API_ONLY_PASSWORDS", False, cast=boolean)
    problem = rules.password_problem(credential.password.reveal(), backend.version, backend.charset, allowed)
    if problem:
        raise ForumRejected(None, problem)


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def _check_inputs(username: str, email: str, regip: str, backend: ForumBackend) -> None:
    four_byte = backend.holds_four_byte_utf8()
    username_code = rules.check_username(username, backend.charset, four_byte_utf8=four_byte)
    for code in (username_code, rules.check_email(email, backend.version)):
        if code:
            raise ForumRejected(code)
    if not rules.valid_regip(regip):
        raise ForumRejected(None, "regip must be empty or an IP address")
