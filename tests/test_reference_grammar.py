"""One ASCII grammar of names for the whole package, user-info never echoed, and platforms
compared as containerd normalises them."""

from __future__ import annotations

import pytest

from shipsure.cli.common import image_reference
from shipsure.cli.main import main
from shipsure.errors import InvalidReferenceError
from shipsure.model import (
    Platform,
    Reference,
    is_host,
    is_manifest_reference,
    is_repository_name,
    is_tag,
    mask_userinfo,
)

CYRILLIC_C = "\u0441"  # looks like "c"


@pytest.mark.parametrize(
    "text",
    [
        f"localhost:5000/team/app:1234-{CYRILLIC_C}ount",  # the tag
        f"localhost:5000/team/{CYRILLIC_C}ount:v1",  # the repository
        f"regi{CYRILLIC_C}try.example.com/app:v1",  # the host
        "localhost:5000/app:v\uff11",  # a full-width digit (\w and \d are Unicode in re)
        "localhost:5000/app:caf\u00e9",  # a Latin letter outside ASCII
        "localhost:5000/app:v1\n",  # `$` would accept the trailing newline
    ],
)
def test_non_ascii_and_trailing_newline_are_refused(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (
            is_tag,
            ["v1", "1.2.3-alpine", "_x", "A" * 128],
            [f"{CYRILLIC_C}", "v1\n", "-x", "A" * 129],
        ),
        (
            is_repository_name,
            ["team/app", "a/b-c/d__e"],
            ["team/app\n", "Team/app", "a//b", "\u0430pp"],
        ),
        (
            is_host,
            ["localhost:5000", "[::1]:5000", "reg.example.com"],
            ["reg\n", "h:123456", "\u0440eg"],
        ),
        (is_manifest_reference, ["v1", "sha256:" + "a" * 64], ["sha256:abc\n", "v1/../x", ""]),
    ],
)
def test_grammar_predicates_are_ascii_and_whole(
    check: object, good: list[str], bad: list[str]
) -> None:
    assert callable(check)
    assert all(check(text) for text in good)
    assert not any(check(text) for text in bad)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ci:PW@127.0.0.1:5000/team/app:v1", "ci:***@127.0.0.1:5000/team/app:v1"),
        ("TOKEN@registry.example.com/app", "***@registry.example.com/app"),
        ("ci:PW@registry.example.com", "ci:***@registry.example.com"),
        ("https://ci:PW@registry.example.com/v2/", "https://ci:***@registry.example.com/v2/"),
        ("alpine@sha256:" + "a" * 64, "alpine@sha256:" + "a" * 64),
        ("reg.io/app@sha256:" + "a" * 64, "reg.io/app@sha256:" + "a" * 64),
    ],
)
def test_user_info_is_masked(text: str, shown: str) -> None:
    assert mask_userinfo(text) == shown


@pytest.mark.parametrize(
    "text",
    ["ci:PW@127.0.0.1:5000/team/app:v1", "ci:PW@registry.example.com/team/app", "PW@reg.io/app"],
)
def test_reference_with_user_info_never_echoes_the_secret(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    message = str(info.value)
    assert "PW" not in message
    assert "--password-stdin" in message and "docker" in message


@pytest.mark.parametrize(
    ("wanted", "child"),
    [
        ("linux/arm64/v8", Platform("linux", "arm64")),
        ("linux/arm64", Platform("linux", "arm64", "v8")),
        ("linux/arm64/v8", Platform("linux", "aarch64")),
        ("linux/aarch64", Platform("linux", "arm64", "v8")),
        ("linux/amd64", Platform("linux", "x86_64")),
        ("linux/x86-64", Platform("linux", "amd64")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/arm/v7", Platform("linux", "arm")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/386", Platform("linux", "i386")),
        ("Linux/ARM64", Platform("linux", "arm64")),
    ],
)
def test_platforms_match_as_containerd_normalises(wanted: str, child: Platform) -> None:
    assert Platform.parse(wanted).matches(child)


@pytest.mark.parametrize(
    ("wanted", "child"),
    [
        ("linux/arm64/v9", Platform("linux", "arm64")),
        ("linux/arm/v6", Platform("linux", "arm", "v7")),
        ("linux/arm/v6", Platform("linux", "arm")),
        ("linux/armhf", Platform("linux", "arm", "v6")),
        ("linux/amd64/v3", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "amd64")),
        ("windows/amd64", Platform("linux", "amd64")),
    ],
)
def test_platforms_that_differ_do_not_match(wanted: str, child: Platform) -> None:
    assert not Platform.parse(wanted).matches(child)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:5000", True),
        ("registry.example.com:65535", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("127.0.0.1:99999", False),
        ("host:0", False),
        ("[::1]:70000", False),
    ],
)
def test_a_port_outside_1_to_65535_is_no_host(host: str, ok: bool) -> None:
    """A URL cannot be built with such a port: a usage error (exit 2), never a traceback."""
    assert is_host(host) is ok
    if not ok:
        with pytest.raises(InvalidReferenceError):
            Reference.parse(f"{host}/app:1")


@pytest.mark.parametrize("text", ["http://127.0.0.1:5000/app:1", "https://registry.example.com/a"])
def test_a_url_is_no_reference_and_the_error_says_so(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="takes no scheme"):
        Reference.parse(text)


@pytest.mark.parametrize("command", ["verify", "restore"])
@pytest.mark.parametrize(
    "text", ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "registry.example.com:5000"]
)
def test_a_registry_alone_is_no_image_and_no_request_goes_to_docker_hub(
    command: str, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docker's grammar reads `127.0.0.1:5000` as Docker Hub's `library/127.0.0.1:5000`;
    verify then asked registry-1.docker.io (a check-error far from what was meant)."""
    extra = ["--from", "127.0.0.1:1"] if command == "restore" else []
    assert main([command, text, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{text}/REPOSITORY" in err and "probe" in err, err


@pytest.mark.parametrize("text", ["alpine:3", "python:3.12", "library/app:5000", "my.app"])
def test_ordinary_docker_hub_names_still_parse(text: str) -> None:
    assert image_reference(text).registry == "docker.io"
