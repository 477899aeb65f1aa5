"""Fixtures for stack runner and drift tests: real Terraform on generated repositories."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import commit, init_repo, module_call

from shipsure.stacks.terraform import locate_binary


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    return locate_binary("terraform")


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin-cache")


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


@pytest.fixture
def webhook() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder
