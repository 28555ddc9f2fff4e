"""UCenter's answers to ``uc_user_register`` and what each means for a job."""

from __future__ import annotations

INVALID_USERNAME = -1
CENSORED_USERNAME = -2
USERNAME_EXISTS = -3
INVALID_EMAIL = -4
EMAIL_DOMAIN_NOT_ALLOWED = -5
EMAIL_EXISTS = -6
MOBILE_EXISTS = -9

MEANINGS = {
    INVALID_USERNAME: "invalid username",
    CENSORED_USERNAME: "username contains a censored word",
    USERNAME_EXISTS: "username already exists",
    INVALID_EMAIL: "invalid e-mail address",
    EMAIL_DOMAIN_NOT_ALLOWED: "e-mail domain not allowed",
    EMAIL_EXISTS: "e-mail address already registered",
    MOBILE_EXISTS: "mobile number already registered",
}


def describe(code: int) -> str:
    return f"{code} ({MEANINGS.get(code, 'unknown UCenter answer')})"


# UCenter's own answers to a request it will not serve (uc_server's index.php and control/*.php).
UCENTER_REFUSALS = (
    "Invalid input",
    "Access denied for agent changed",
    "Authorization has expired",
    "Access denied for operation changed",
    "Access denied for application",
    "Invalid operation",
    "Access denied",  # uc_client's own, when its configuration is not loaded
)
