"""The value scrubber on its own: what counts as a secret of a job, and where it is found."""

from rq_gevent.scrubbing import FILTERED, redact, secret_strings, trim_subprocess_breadcrumbs


class Account:
    def __init__(self, login: str, password: str):
        self.login = login
        self.password = password


def test_strings_are_collected_from_nested_arguments_and_objects():
    found = secret_strings(("user1", {"token": b"tok-123456"}), {"account": Account("login1", "pw-98765")})
    assert {"user1", "tok-123456", "token", "account", "login1", "pw-98765", "password"} <= set(found)
    assert found == sorted(found, key=len, reverse=True)  # longest replaced first


def test_short_strings_are_not_secrets_and_repr_spellings_are():
    secret = "C:\\keys\\k1"
    found = secret_strings(["id", secret])
    assert "id" not in found
    assert repr(secret)[1:-1] in found and repr(secret)[1:-1] != secret  # how a message quoting a repr() shows it


def test_redact_reaches_every_string_of_the_event_keys_included():
    event = {
        "exception": {"values": [{"value": "Command '['tool', 'pw-98765']' failed"}]},
        "breadcrumbs": {"values": [{"message": "logging in with pw-98765", "data": {"pw-98765": 1}}]},
        "tags": ("pw-98765-suffix",),
        "number": 7,
    }
    redacted = redact(event, secret_strings("pw-98765"))
    assert "pw-98765" not in repr(redacted)
    assert redacted["exception"]["values"][0]["value"] == f"Command '['tool', '{FILTERED}']' failed"
    assert redacted["tags"] == (f"{FILTERED}-suffix",) and redacted["number"] == 7


def test_subprocess_breadcrumbs_keep_only_the_program():
    event = {
        "breadcrumbs": {
            "values": [
                {"category": "subprocess", "message": "/usr/bin/php bridge.php secret-arg"},
                {"category": "subprocess", "message": "/bin/true"},
                {"category": "log", "message": "kept as it is"},
            ]
        }
    }
    trim_subprocess_breadcrumbs(event)
    assert [crumb["message"] for crumb in event["breadcrumbs"]["values"]] == [
        f"php {FILTERED}",
        "true",
        "kept as it is",
    ]
