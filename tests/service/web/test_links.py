"""Every name in a link or a form's action is one encoded path segment: a
suite folder named like a route (`..%2F`, `?`, `#`) cannot make a page link
or post anywhere but its own suite's page."""

from __future__ import annotations

import re
from pathlib import Path

from tests.service.test_serve import make_repo, start, stop
from tests.service.web.helpers import add_users, signed_in

ODD = "odd?x=1#frag%2e%2e"


def test_a_suite_folder_with_url_characters_links_as_one_encoded_segment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    folder = repo / "test-suites" / ODD / "tc" / "a"
    folder.mkdir(parents=True)
    (folder / "run.sh").write_text("true\n")
    (repo / "test-suites" / ODD / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    try:
        add_users(served)
        with signed_in(served, "ada") as admin:
            for page in ("/", "/suites"):
                html = admin.get(page).text
                targets = re.findall(r'(?:href|action)="(/suites/[^"]*)"', html)
                assert "/suites/odd%3Fx%3D1%23frag%252e%252e" in targets, targets
                assert not any(t.startswith("/suites/odd?") for t in targets), targets
            # the encoded link reaches the suite's own page, whose loader refused its name
            own = admin.get("/suites/odd%3Fx%3D1%23frag%252e%252e")
            assert own.status_code == 200
            assert "not safe as one path segment" in own.text
    finally:
        stop(served)
