"""The texts for answers retrying cannot fix: each names its usual cause and that nothing was dropped."""

from __future__ import annotations

import pytest

from hal_logging.azure import messages


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, ["managed identity", "az login", "UnsupportedAccessTokenType", "managed identity X"]),
        (403, ["Monitoring Metrics Publisher", "30 minutes", "dcr-1", "managed identity X"]),
        (404, ["immutable id", "Custom-", "https://dce.example", "'Custom-S'"]),
    ],
)
def test_fatal_answers_say_what_to_fix(status: int, words: list[str]) -> None:
    text = messages.fatal_message(
        status,
        "SomeCode",
        "the service's words",
        credential="managed identity X",
        rule_id="dcr-1",
        endpoint="https://dce.example",
        stream="Custom-S",
    )
    for word in [
        *words,
        f"{status} SomeCode: the service's words",
        "Nothing undelivered was dropped",
    ]:
        assert word in text


def test_credential_failure_names_both_kinds_of_identity() -> None:
    text = messages.credential_message(RuntimeError("no IMDS here\nsecond line"), "auto (x)")
    assert "auto (x): no IMDS here." in text and "second line" not in text
    assert "AZURE_CLIENT_ID" in text and "AZURE_CLIENT_SECRET" in text
    assert "(RuntimeError" not in text
    assert "ValueError." in messages.credential_message(ValueError(), "auto")


def test_other_texts() -> None:
    assert "hal-logging[azure]" in messages.sdk_missing_message(ImportError("no azure"))
    text = messages.no_dead_letter_message(3, "400 Bad: x")
    assert "3 row(s)" in text and "400 Bad: x" in text and "kept undelivered" in text
