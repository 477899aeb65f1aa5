"""`shipsure serve REGISTRY`: verify every push from the registry's notifications, run the
probe on a schedule, and serve /metrics, /healthz, /readyz, /api/findings and a status page."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shipsure.cli.common import number, whole_number
from shipsure.cli.registry_options import (
    add_probe_options,
    add_referrers_option,
    add_registry_options,
    registry_from_args,
)
from shipsure.errors import BadInputError, UsageError

EPILOG = """\
the registry's side (distribution 2.8 / 3.x config.yml):
  notifications:
    endpoints:
      - name: shipsure
        url: http://shipsure-serve:8080/notifications
        headers: {Authorization: ["Bearer <the token in --notifications-token-file>"]}
        timeout: 2s
        threshold: 5
        backoff: 5s
        ignore: {actions: [pull]}

config file (--config FILE, YAML): the long option names without "--" as keys, e.g.
  registry: registry.example.com
  listen: 0.0.0.0:8080
  probe-interval: 3600
  notifications-token-file: /run/secrets/shipsure-notifications
A flag given on the command line wins over the file.

examples:
  shipsure serve --listen 0.0.0.0:8080 --notifications-token-file token registry:5000
  shipsure serve --config /etc/shipsure/serve.yaml --log-format json

exit codes: 0 stopped by SIGTERM/SIGINT, 2 bad option or config, 3 could not start
(address in use, state file unusable)."""

DEFAULT_LISTEN = "127.0.0.1:8080"
MAX_CONFIG_BYTES = 1024 * 1024


def add_parser(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="watch a registry: verify every push from its notifications, probe it on a "
        "schedule, serve metrics and a status page",
        description="Verify every push within seconds from the registry's notifications, run "
        "the probe on its interval, and serve what is known: /metrics (Prometheus), "
        "/healthz, /readyz, /api/findings (JSON) and / (a status page).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("registry", metavar="REGISTRY", nargs="?", help="registry host[:port]")
    parser.add_argument("--config", metavar="FILE", help="read options from this YAML file")
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default: {DEFAULT_LISTEN}; [::]:8080 for IPv6)",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="SQLite state file (default: $SHIPSURE_STATE_DIR, $XDG_STATE_HOME/shipsure or "
        "~/.local/state/shipsure, then serve.sqlite)",
    )
    parser.add_argument(
        "--notifications-token-file",
        metavar="FILE",
        help="shared secret the registry sends as 'Authorization: Bearer <token>'; without "
        "it POST /notifications is refused",
    )
    parser.add_argument(
        "--probe-interval",
        type=number(),
        default=3600.0,
        metavar="SECONDS",
        help="probe the whole registry this often (default: 3600; 0: never)",
    )
    add_probe_options(parser, scheduled=True)
    add_referrers_option(parser)
    parser.add_argument(
        "--push-check",
        choices=["deep", "head"],
        default="deep",
        help="how pushed blobs are checked: deep GETs and re-hashes each (catches data gone "
        "behind a HEAD 200 from a stale link or cache; default), head only HEADs them",
    )
    parser.add_argument(
        "--push-workers",
        type=whole_number(1, 64),
        default=2,
        metavar="N",
        help="pushes verified at once (default: 2)",
    )
    parser.add_argument(
        "--index-debounce",
        type=number(),
        default=2.0,
        metavar="SECONDS",
        help="wait this long after an index's last event before walking it (default: 2)",
    )
    parser.add_argument(
        "--max-pending",
        type=whole_number(1, 10_000_000),
        default=10_000,
        metavar="N",
        help="pushes queued at most; more are counted as dropped and left to the next "
        "probe, which then runs within a minute (default: 10000)",
    )
    parser.add_argument(
        "--max-body",
        type=whole_number(1024, 64 * 1024 * 1024),
        default=1024 * 1024,
        metavar="BYTES",
        help="largest notification body accepted (default: 1 MiB)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="logs on stderr: text or JSON lines (default: text)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="least severe log level shown (default: info; debug logs every request)",
    )
    add_registry_options(parser)
    _record_given_options(parser)
    parser.set_defaults(run=run, serve_parser=parser)


# The namespace attribute naming the options given on the command line: --config fills
# only the others, whatever value a given flag has (its default included).
_GIVEN = "_given_options"


def _record_given_options(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # argparse keeps no public list of its options
        if action.option_strings and action.dest != "help":
            action.__class__ = _recording(type(action))


def _recording(base: type[argparse.Action]) -> type[argparse.Action]:
    class Recording(base):  # type: ignore[valid-type,misc]
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            super().__call__(parser, namespace, values, option_string)
            given = getattr(namespace, _GIVEN, None) or set()
            given.add(self.dest)
            setattr(namespace, _GIVEN, given)

    Recording.__name__ = base.__name__
    return Recording


def _given_on_command_line(args: argparse.Namespace, action: argparse.Action) -> bool:
    if not action.option_strings:  # the REGISTRY positional: given when not None
        return getattr(args, action.dest) is not None
    return action.dest in (getattr(args, _GIVEN, None) or set())


def apply_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill options from `--config FILE` where the command line left the default.

    Keys are long option names without "--" ("probe-interval" or "probe_interval");
    values are checked as the flag's would be. Raises BadInputError naming the file and key.
    """
    if not args.config:
        return
    path = args.config
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            # Cut short, the rest could still parse, without its last options.
            raise BadInputError(f"--config {path}: over {MAX_CONFIG_BYTES} bytes")
        doc = yaml.safe_load(raw)
    except OSError as exc:
        raise BadInputError(f"--config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"--config {path}: not YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise BadInputError(f"--config {path}: not YAML (nested too deep)") from None
    if doc is None:
        return
    if not isinstance(doc, Mapping):
        raise BadInputError(f"--config {path}: not a mapping of option: value")
    actions = {
        a.dest: a
        for a in parser._actions  # argparse keeps no public list of its options
        if a.dest not in ("help", "config", "run", "serve_parser")
    }
    by_name = {a.option_strings[0][2:] if a.option_strings else a.dest: a for a in actions.values()}
    for key, value in doc.items():
        name = str(key).replace("_", "-")
        action = by_name.get(name) or actions.get(str(key).replace("-", "_"))
        if action is None:
            raise BadInputError(f"--config {path}: unknown option {key!r}")
        if _given_on_command_line(args, action):
            continue
        setattr(args, action.dest, _config_value(path, str(key), action, value))


def _config_value(path: str, key: str, action: argparse.Action, value: Any) -> Any:
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise BadInputError(f"--config {path}: {key} must be true or false")
        return value if action.const is True else not value
    if isinstance(value, dict | list) or value is None:
        raise BadInputError(f"--config {path}: {key} must be a single value")
    text = str(value)
    if action.choices is not None and text not in action.choices:
        choices = ", ".join(str(c) for c in action.choices)
        raise BadInputError(f"--config {path}: {key} {text!r} is not one of {choices}")
    if action.type is not None and callable(action.type):
        try:
            return action.type(text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise BadInputError(f"--config {path}: {key}: {exc}") from None
    return text


def default_state_path() -> Path:
    base = os.environ.get("SHIPSURE_STATE_DIR")
    if base:
        return Path(base) / "serve.sqlite"
    xdg = os.environ.get("XDG_STATE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return root / "shipsure" / "serve.sqlite"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, e.g. 0.0.0.0:8080 or [::]:8080")
    return host, int(port_text)


def read_token(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4097)
    except OSError as exc:
        raise BadInputError(f"--notifications-token-file {path}: {exc.strerror or exc}") from None
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadInputError(f"--notifications-token-file {path}: not UTF-8 text") from None
    if len(raw) > 4096 or not token or any(c.isspace() for c in token):
        raise BadInputError(
            f"--notifications-token-file {path}: must hold one token (no spaces, at most 4 KiB)"
        )
    return token


def run(args: argparse.Namespace) -> int:
    from shipsure.serve import logs
    from shipsure.serve.pushqueue import PushQueue
    from shipsure.serve.server import App, HttpOptions, make_server
    from shipsure.serve.store import Store
    from shipsure.serve.watcher import Watcher, WatchOptions

    apply_config(args, args.serve_parser)
    if not args.registry:
        raise UsageError("serve needs REGISTRY (an argument or `registry:` in --config)")
    host, port = parse_listen(args.listen)
    token = read_token(args.notifications_token_file) if args.notifications_token_file else None
    logs.configure(args.log_format, args.log_level)
    log = logging.getLogger("shipsure.serve")
    # Open one client now: a bad registry name or option fails here, before listening.
    registry_from_args(args, args.registry).close()
    store = Store(args.state or default_state_path())
    queue = PushQueue(max_pending=args.max_pending, index_debounce=args.index_debounce)
    options = WatchOptions(
        push_deep=args.push_check == "deep",
        push_workers=args.push_workers,
        walk_concurrency=max(1, int(args.concurrency)),
        referrers=args.referrers,
        probe_interval=args.probe_interval,
        probe_deep_sample=args.probe_deep_sample,
        probe_rate=args.probe_rate,
    )
    watcher = Watcher(
        args.registry, lambda: registry_from_args(args, args.registry), store, queue, options
    )
    app = App(
        watcher,
        store,
        queue,
        HttpOptions(token=token, max_body=args.max_body, probe_interval=args.probe_interval),
    )
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        store.close()
        from shipsure.errors import CouldNotRunError

        raise CouldNotRunError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    watcher.start()
    serving = threading.Thread(target=server.serve_forever, name="shipsure-http", daemon=True)
    serving.start()
    bound_host, bound_port = server.server_address[:2]
    log.info(
        "serving",
        extra={
            "listen": f"{bound_host!s}:{bound_port}",
            "registry": args.registry,
            "state": store.path,
            "notifications": "on" if token else "off (no --notifications-token-file)",
            "probe_interval": args.probe_interval,
        },
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        saved = watcher.stop()
        server.server_close()
        store.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        log.info("stopped", extra={"pushes_saved_for_next_start": saved})
    return 0
