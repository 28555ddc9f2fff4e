"""jobs.sealing: secrets travel sealed, and show up nowhere in plaintext."""

from __future__ import annotations

import pickle

import pytest

from jobs.sealing import KEY_VARIABLE, Sealed, SealingError, Secret, generate_key, seal

# Runs once, not on each rq, Python and server (docs/contributing.md):
# cryptography's Fernet and pickle, no worker.
pytestmark = pytest.mark.once

PASSWORD = "S3cr3t-pässwörd"


def test_seal_and_open_round_trip_through_pickle():
    sealed = seal(PASSWORD)
    restored = pickle.loads(pickle.dumps(sealed))
    assert restored == sealed
    assert restored.open().reveal() == PASSWORD
    assert PASSWORD.encode() not in pickle.dumps(sealed)


def test_reprs_are_masked():
    sealed = seal(PASSWORD)
    secret = sealed.open()
    for text in (repr(sealed), str(sealed), repr(secret), str(secret), f"{secret}", repr([sealed, secret])):
        assert PASSWORD not in text and sealed.token not in text
        assert "***" in text


def test_a_revealed_secret_refuses_to_be_pickled():
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(Secret(PASSWORD))


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE)
    with pytest.raises(SealingError, match=f"{KEY_VARIABLE} is not set; generate one with"):
        seal(PASSWORD)


def test_wrong_key_is_a_clear_error_without_the_value(monkeypatch):
    sealed = seal(PASSWORD)
    monkeypatch.setenv(KEY_VARIABLE, generate_key())
    with pytest.raises(SealingError, match="does not match the key it was sealed with") as caught:
        sealed.open()
    assert PASSWORD not in str(caught.value) and sealed.token not in str(caught.value)


def test_malformed_key_and_damaged_token(monkeypatch):
    with pytest.raises(SealingError, match="is damaged"):
        Sealed("not-a-token").open()
    monkeypatch.setenv(KEY_VARIABLE, "short")
    with pytest.raises(SealingError, match="is malformed"):
        seal(PASSWORD)


def test_key_rotation_opens_values_sealed_with_an_older_key(monkeypatch, sealing_key):
    old = seal(PASSWORD)
    new_key = generate_key()
    monkeypatch.setenv(KEY_VARIABLE, f"{new_key},{sealing_key}")
    assert old.open().reveal() == PASSWORD
    fresh = seal(PASSWORD)
    assert fresh.open(keys=new_key).reveal() == PASSWORD
    with pytest.raises(SealingError):
        fresh.open(keys=sealing_key)
