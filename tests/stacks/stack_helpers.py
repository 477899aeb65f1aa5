"""Generated stack repositories: real git repositories in temp folders."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_AUTHOR_NAME": "shipsure tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "shipsure tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return out.stdout.strip()


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")


def write(repo: Path, files: Mapping[str, str | None]) -> None:
    """Write (or with None, delete) files."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def commit(repo: Path, files: Mapping[str, str | None], message: str = "change") -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def module_call(name: str, source: str) -> str:
    return f'module "{name}" {{\n  source = "{source}"\n}}\n'


def greet_stack(name: str) -> str:
    return (
        module_call("greet", "../../modules/greet").replace("}\n", f'  name   = "{name}"\n}}\n', 1)
        + 'output "greeting" { value = module.greet.greeting }\n'
    )


GREET_MODULE = (
    'variable "name" { type = string }\noutput "greeting" { value = "hello ${var.name}" }\n'
)


def make_tf_repo(root: Path, stacks: list[str]) -> Path:
    init_repo(root)
    files: dict[str, str | None] = {"modules/greet/main.tf": GREET_MODULE}
    files[".gitignore"] = ".terraform/\n*.tfstate*\n.terraform.lock.hcl\n.shipsure/\n"
    for stack in stacks:
        files[f"stacks/{stack}/main.tf"] = greet_stack(stack)
    commit(root, files, "stacks")
    return root


class Recorder:
    """A webhook receiver on 127.0.0.1 that keeps every POST body."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                recorder.posts.append(json.loads(body))
                self.send_response(recorder.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
