"""open_backend(url): the scheme picks the backend; a URL we cannot use is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipsure.cli.main import main
from shipsure.errors import UsageError
from shipsure.stacks.locks import open_backend
from shipsure.stacks.locks.file import FileLockBackend


def test_file_url_opens_a_directory_backend(tmp_path: Path) -> None:
    backend = open_backend(f"file://{tmp_path}/locks")
    assert isinstance(backend, FileLockBackend)
    assert backend.directory == tmp_path / "locks"
    assert backend.acquire("stacks/a", "me", 60) is not None
    assert (tmp_path / "locks").is_dir()
    backend.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("consul://127.0.0.1:8500", "unknown scheme 'consul'"),
        ("/var/lib/locks", "has no scheme"),
        ("file://", "names no directory"),
        ("file://otherhost/locks", "not a host"),
        ("etcd://", "names no host"),
        ("etcd://127.0.0.1:notaport", "malformed"),
        ("vault+http://127.0.0.1:8200", "names no KV v2 mount"),
    ],
)
def test_unusable_urls_are_usage_errors(url: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_backend(url)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_vault_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    with pytest.raises(UsageError, match="VAULT_TOKEN"):
        open_backend("vault+http://127.0.0.1:8200/secret/ci/locks")


def test_passwords_never_reach_messages() -> None:
    with pytest.raises(UsageError) as caught:
        open_backend("consul://ci:hunter2@127.0.0.1:8500")
    assert "hunter2" not in str(caught.value)
    assert "ci:***@127.0.0.1:8500" in str(caught.value)


MALFORMED = [
    "redis://:hunter2@[::1/0",  # an unclosed IPv6 bracket
    "rediss://ci:hunter2@[::1]:99999/0",  # port out of range
    "redis://:hunter2@locks:abc/0",  # port not a number
    "redis://:hunter2@locks/zero",  # database not a number: redis-py would use 0
    "redis://:hunter2@locks/0?db=x",
    "redis://:hunter2@/0",  # no host
    "etcd://ci:hunter2@[::1",
    "postgresql://ci:hunter2@[::1/db",
    "postgresql://ci:hunter2@db:abc/db",
    "vault://ci:hun/ter2@[zz/secret",  # a `/` inside the password
    "redis://:hun@ter2@locks:x/0",  # an `@` inside the password
    "file://[::1/locks",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_every_malformed_lock_url_is_one_masked_line_and_exit_2(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "t")
    code = main(["stacks", "locks", "list", "--lock-url", url])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "lock URL" in line
    assert "hunter2" not in line and "ter2" not in line
    assert "Traceback" not in captured.err
