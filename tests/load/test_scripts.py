"""Script references: file://relative, file:///absolute, http(s)://, inline."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.load.scripts import ScriptError, resolve


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/init.sh":
            body = b"echo fetched over http\n"
            self.send_response(200)
        else:
            body = b"nope"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_relative_file_url_is_read_from_the_definition_folder(tmp_path: Path) -> None:
    (tmp_path / "init.sh").write_text("echo relative\n")
    script = resolve("file://init.sh", tmp_path)
    assert script.text == "echo relative\n"
    assert script.origin == str(tmp_path / "init.sh")


def test_absolute_file_url(tmp_path: Path) -> None:
    (tmp_path / "abs.sh").write_text("echo absolute\n")
    assert resolve(f"file://{tmp_path}/abs.sh", Path("/elsewhere")).text == "echo absolute\n"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="no such file"):
        resolve("file://nothing.sh", tmp_path)


def test_http_script_is_fetched(web: str, tmp_path: Path) -> None:
    script = resolve(f"{web}/init.sh", tmp_path)
    assert script.text == "echo fetched over http\n"
    assert script.origin == f"{web}/init.sh"


def test_http_error_status_is_a_problem(web: str, tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="HTTP 404"):
        resolve(f"{web}/missing.sh", tmp_path)


def test_unreachable_url_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="unreachable"):
        resolve("http://127.0.0.1:9/init.sh", tmp_path)


def test_inline_text_is_the_script(tmp_path: Path) -> None:
    assert resolve("echo one\necho two\n", tmp_path).text == "echo one\necho two\n"


@pytest.mark.parametrize("value", ["", "   \n", None, 3])
def test_an_inline_script_never_silently_becomes_empty(value: object, tmp_path: Path) -> None:
    with pytest.raises(ScriptError):
        resolve(value, tmp_path)


def test_a_bare_file_name_is_not_run_as_a_command(tmp_path: Path) -> None:
    (tmp_path / "suite_init.sh").write_text("echo hi\n")
    with pytest.raises(ScriptError, match=r"write file://suite_init\.sh"):
        resolve("suite_init.sh", tmp_path)


def test_a_relative_file_url_may_not_leave_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    case = repo / "test-suites" / "s" / "tc" / "c"
    case.mkdir(parents=True)
    (repo / "test-suites" / "common.sh").write_text("echo shared\n")
    # up and around inside the repository is fine
    assert resolve("file://../../../common.sh", case, repo).text == "echo shared\n"
    with pytest.raises(ScriptError) as caught:
        resolve("file://" + "../" * 30 + "etc/hostname", case, repo)
    message = str(caught.value)
    assert f"leads outside the definitions repository {repo.resolve()}" in message
    assert "write file:///etc/hostname if that file is really meant" in message


def test_a_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    (outside / "secret.sh").write_text("echo secret\n")
    (repo / "init.sh").symlink_to(outside / "secret.sh")
    with pytest.raises(ScriptError, match="leads outside the definitions repository"):
        resolve("file://init.sh", repo, repo)
    assert resolve(f"file://{outside}/secret.sh", repo, repo).text == "echo secret\n"


def test_a_suite_reaching_outside_its_repo_fails_validate_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.repo import find_suite

    repo = tmp_path / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "one.yaml").write_text("name: one\nhosts: [h1]\n")
    suite = repo / "test-suites" / "s"
    (suite / "tc" / "c").mkdir(parents=True)
    (suite / "tc" / "c" / "run.sh").write_text("true\n")
    (suite / "suite.yaml").write_text(
        "cluster: one\ntests: [c]\ninitialize: file://../../../etc/passwd\n"
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(suite)
    (problem,) = caught.value.errors
    assert (problem.file, problem.line, problem.key) == (suite / "suite.yaml", 3, "initialize")
    assert "leads outside the definitions repository" in problem.message
