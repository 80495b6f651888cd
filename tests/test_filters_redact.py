"""Redaction: secrets are replaced by markers naming their kind, rows are kept, counts kept."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal_logging import _json
from hal_logging.pipeline.config import ForwardConfig
from hal_logging.pipeline.filters import build_filters, make_redact_filter
from hal_logging.pipeline.filters.redact import RedactFilter
from hal_logging.pipeline.model import Record
from hal_logging.redaction import MIN_AUTO_VALUE, Redactor, looks_secret, plan_env_values
from hal_logging.schema import empty_row

API_KEY = "sk-proj-" + "Zq8xW3vB7nM2kL9pQ4rT6yU1iO5aS0dF"


def record(message: str = "", props: dict[str, Any] | None = None, **cols: str) -> Record:
    row = empty_row()
    row.update(
        TimeGenerated="2024-05-01T12:00:00.000000Z", Level="INFO", LoggerName="docker.stdout"
    )
    row.update(Message=message, **cols)
    row["Properties"] = {
        "hal": {"stream": "stdout", "record_id": "r1", "format": "text"},
        **(props or {}),
    }
    return Record(row=row, stream="stdout", start=0, end=len(message) + 1, source="s")


CASES = [
    ("openai_key", "key sk-" + "a" * 20 + "B3" * 10, "sk-"),
    ("openai_key", "key " + API_KEY, "Zq8xW3"),
    ("anthropic_key", "ANTHROPIC sk-ant-api03-" + "x1Y2" * 10 + "-AA", "x1Y2"),
    ("github_token", "push with ghp_" + "A1b2" * 9, "A1b2"),
    ("github_token", "tok=github_pat_11ABCDEFG0_" + "q" * 40, "qqqq"),
    ("aws_access_key_id", "id AKIAIOSFODNN7EXAMPLE used", "IOSFODNN7"),
    ("aws_access_key_id", "id ASIAY34FZKBOKMUTVV7A used", "Y34FZKBOK"),
    (
        "aws_secret_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXU",
    ),
    (
        "aws_secret_key",
        '{"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
        "wJalrXU",
    ),
    (
        "azure_key",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc+DEF/123==;EndpointSuffix=x",
        "abc+DEF",
    ),
    (
        "azure_key",
        "Endpoint=sb://n.servicebus.windows.net/;SharedAccessKeyName=R;SharedAccessKey=QmFzZTY0S2V5PQ==",
        "QmFzZTY0",
    ),
    (
        "sas_signature",
        "GET https://a.blob.core.windows.net/c/b?sv=2022-11-02&sig=Ab12%2Bcd34EF%3D&se=x",
        "Ab12%2B",
    ),
    (
        "jwt",
        "got eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgN",
    ),
    ("bearer_token", "headers={'Authorization': 'Bearer abc.DEF-123_456~xyz'}", "abc.DEF"),
    ("bearer_token", "curl -H 'authorization: bearer 0123456789abcdef'", "0123456789"),
    ("basic_auth", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpw"),
    ("url_password", "connecting to postgresql://admin:S3cr3t!pw@db.internal:5432/x", "S3cr3t"),
    ("url_password", "redis://:hunter2hunter2@cache:6379", "hunter2"),
    ("password", "login password=correct-horse-battery", "correct-horse"),
    ("password", '{"client_secret": "abcdef123456"}', "abcdef123456"),
    (
        "private_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQUJDREVGR0g=\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNz",
    ),
    ("private_key", "cut: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "MIIEvQ"),
]


@pytest.mark.parametrize(("kind", "text", "secret"), CASES)
def test_credential_shapes_are_replaced_by_a_marker_naming_the_kind(
    kind: str, text: str, secret: str
) -> None:
    r = Redactor()
    out = r.redact_str(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert r.counts.get(kind, 0) >= 1


@pytest.mark.parametrize(
    "text",
    [
        "task-12345678901234567890123 finished",  # "sk-" inside a word
        "using sk-learn 1.4 and scikit-learn",
        "tokens used: 1234 prompt, 56 completion; total cost $0.0123",
        "see https://wandb.ai/team/project/runs/abc123?workspace=user",
        "Asia/Tokyo timezone, ASIA region, Slovakia",
        "the password field is required",
        "Bearer",
        "max_tokens=4096 temperature=0.2",
        "progress 45%|████▌     | 45/100 [00:04<00:05, 10.1it/s]",
        "PATH=/usr/local/bin:/usr/bin pwd=/home/agent",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    r = Redactor()
    assert r.redact_str(text) is text
    assert r.counts == {}


def test_a_prefix_saying_what_the_value_is_is_kept() -> None:
    out = Redactor().redact_str(
        "postgres://admin:pw123456@db/x and Authorization: Bearer abcdefgh12345"
    )
    assert (
        out
        == "postgres://admin:[REDACTED:url_password]@db/x and Authorization: Bearer [REDACTED:bearer_token]"
    )


def test_env_values_named_from_command_env_and_secret_names() -> None:
    environ = {
        "OPENAI_API_KEY": API_KEY,
        "MY_TOKEN": "tok-0123456789",
        "SHORT_SECRET": "abc",
        "HOME": "/home/agent-0123456789",
        "PLAIN": "plain-value-123",
        "NAMED": "four",
    }
    command_env = {"WANDB": "wandb-secret-value", "HAL_RUN_ID": "run-2024-0001", "MODEL": "gpt"}
    plan = plan_env_values(["NAMED", "UNSET"], environ=environ, command_env=command_env)
    assert plan.values == {
        "four": "NAMED",
        "wandb-secret-value": "WANDB",
        API_KEY: "OPENAI_API_KEY",
        "tok-0123456789": "MY_TOKEN",
    }
    assert plan.missing == ["UNSET"]
    assert set(plan.skipped_short) == {"SHORT_SECRET", "MODEL"}
    off = plan_env_values([], environ=environ, secret_names=False)
    assert off.values == {}


def test_secret_looking_names() -> None:
    for name in (
        "OPENAI_API_KEY",
        "HF_TOKEN",
        "AZURE_CLIENT_SECRET",
        "DB_PASSWORD",
        "GITHUB_PAT_TOKEN",
    ):
        assert looks_secret(name), name
    for name in ("HOME", "PATH", "HAL_TASK_ID", "PWD", "MODEL_NAME"):
        assert not looks_secret(name), name


def test_env_value_replaced_with_the_variable_name_also_json_escaped() -> None:
    value = 'pa"ss\\word-0123'
    r = Redactor({value: "DB_PASS"})
    assert r.redact_str(f"raw {value} end") == "raw [REDACTED:env:DB_PASS] end"
    escaped = _json.dumps_str(value)[1:-1]
    assert r.redact_str(f'{{"p": "{escaped}"}}') == '{"p": "[REDACTED:env:DB_PASS]"}'


def test_properties_walked_recursively_keys_values_and_secret_fields() -> None:
    r = Redactor({API_KEY: "OPENAI_API_KEY"})
    props = {
        "config": {"headers": {"x": f"Bearer {API_KEY}"}, "keys": [API_KEY, 1, None, True]},
        API_KEY: "as a key",
        "password": "hunter22",
        "max_tokens": 100,
        "exception": {
            "type": "AuthenticationError",
            "message": f"bad key {API_KEY}",
            "stacktrace": f'File "x"\n  key="{API_KEY}"',
        },
    }
    out = r.redact_value(props)
    assert API_KEY not in _json.dumps_str(out)
    assert out["password"] == "[REDACTED:secret_field]"
    assert out["max_tokens"] == 100
    assert out["config"]["keys"][1:] == [1, None, True]
    assert out["exception"]["type"] == "AuthenticationError"
    assert "[REDACTED:env:OPENAI_API_KEY]" in out["exception"]["stacktrace"]
    clean = {"a": {"b": ["c", 1]}, "n": 2}
    assert r.redact_value(clean) is clean


def test_filter_keeps_the_row_counts_and_leaves_trusted_columns() -> None:
    flt = RedactFilter(
        Redactor({API_KEY: "OPENAI_API_KEY", "run-secret-id": "X_TOKEN"}),
        {"RunID": "run-secret-id"},
    )
    rec = record(
        f"key={API_KEY}",
        {"url": f"https://u:{API_KEY}@h/x"},
        RunID="run-secret-id",
        LoggerName=API_KEY,
    )
    out = list(flt.process(rec))
    assert out == [rec]
    row = rec.row
    assert row["RunID"] == "run-secret-id"  # trusted: the VM side's own value
    assert row["LoggerName"] == "[REDACTED:env:OPENAI_API_KEY]"
    assert API_KEY not in _json.dumps_str(row)
    assert flt.stats["rows_redacted"] == 1
    assert flt.stats["redacted:env:OPENAI_API_KEY"] == 3
    clean = record("nothing to see")
    assert list(flt.process(clean)) == [clean]
    assert flt.stats["rows_redacted"] == 1


def test_private_key_printed_line_by_line_is_redacted_row_by_row() -> None:
    flt = RedactFilter(Redactor())
    lines = [
        "before",
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB",
        "aFDrBz9vFqU4yf0ZkqE1jXJw3hY0P6J0R+Hq0Jv6q0b8Y0Yc6Xr1d4a2b3c4d5e6",
        "-----END RSA PRIVATE KEY-----",
        "after MIIEowIBAAKCAQEA",
    ]
    out = [next(iter(flt.process(record(line)))).row["Message"] for line in lines]
    assert out[0] == "before"
    assert "BEGIN RSA PRIVATE KEY" in out[1]
    assert out[2] == out[3] == out[4] == "[REDACTED:private_key]"
    assert out[5] == "after MIIEowIBAAKCAQEA"  # the block is closed: ordinary text again


def test_long_message_stays_within_the_field_limit() -> None:
    r = Redactor({"abcdefgh": "SOME_TOKEN"})
    row = record("abcdefgh " * 7000).row
    r.redact_row(row)
    assert len(row["Message"].encode()) <= 64 * 1024
    assert "abcdefgh" not in row["Message"][:1000]


def test_build_filters_reads_redact_env_and_command_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_CUSTOM", "custom-value-1")
    monkeypatch.setenv("OTHER_THING", "other-value-22")
    monkeypatch.setenv("HAL_LOGGING_REDACT_ENV", "OTHER_THING, NOT_SET_ANYWHERE")
    config = ForwardConfig(redact_env=["MY_CUSTOM"])
    config.command_env = {"CMD_ONLY": "command-value-333"}  # type: ignore[attr-defined]
    chain = build_filters(config, {})
    flt = chain[0]
    assert isinstance(flt, RedactFilter)
    rec = record("custom-value-1 other-value-22 command-value-333")
    flt.process(rec)
    assert rec.row["Message"] == (
        "[REDACTED:env:MY_CUSTOM] [REDACTED:env:OTHER_THING] [REDACTED:env:CMD_ONLY]"
    )
    assert any("NOT_SET_ANYWHERE" in note for note in flt.notes)
    assert not any(
        isinstance(f, RedactFilter) for f in build_filters(ForwardConfig(redact=False), {})
    )


def test_short_values_are_reported_not_redacted() -> None:
    flt = make_redact_filter(ForwardConfig(), {}, environ={"API_TOKEN": "x" * (MIN_AUTO_VALUE - 1)})
    assert any("API_TOKEN" in note for note in flt.notes)


_secret_chars = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=24,
    max_size=40,
)
_noise = st.text(max_size=40)


@given(_noise, _noise, _secret_chars, st.sampled_from(["text", "json", "url", "bearer", "key"]))
def test_a_known_value_never_survives(before: str, after: str, secret: str, where: str) -> None:
    value = "sk-" + secret
    r = Redactor({value: "OPENAI_API_KEY"})
    text = {
        "text": f"{before}{value}{after}",
        "json": _json.dumps_str({"k": f"{before}{value}", "v": [after, value]}),
        "url": f"https://user:{value}@host/{after}",
        "bearer": f"Authorization: Bearer {value}{after}",
        "key": f"{before} {value} {after}",
    }[where]
    row = record(text, {"nested": {"v": text}, text: 1}).row
    r.redact_row(row)
    assert value not in _json.dumps_str(row)
    assert value not in str(row)


@pytest.mark.parametrize("kind,text,secret", CASES[::3])
def test_stdlib_pre_check_finds_the_same(kind: str, text: str, secret: str) -> None:
    fast, slow = Redactor({API_KEY: "K"}), Redactor({API_KEY: "K"}, fast=False)
    for t in (text, f"x {API_KEY} y", "nothing here"):
        assert fast.redact_str(t) == slow.redact_str(t)
    assert fast.counts == slow.counts
