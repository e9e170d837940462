"""Compose files read as hosts: the mapping of each key, and errors that
name the file, the line and the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from phalanx.load.cluster import load_cluster
from phalanx.load.compose import load_compose
from phalanx.load.errors import DefinitionErrors
from phalanx.model import Disk, Healthcheck, PublishedPort


def _write(folder: Path, text: str) -> Path:
    file = folder / "compose.yaml"
    file.write_text(textwrap.dedent(text))
    return file


def test_every_honoured_key_maps_onto_the_host(tmp_path: Path) -> None:
    (tmp_path / "db.env").write_text("# comment\nUSER=app\nQUOTED='a b'\n")
    file = _write(
        tmp_path,
        """\
        services:
          db:
            image: postgres:16
            hostname: db.example.test
            command: postgres -c 'fsync=off'
            environment: [PGDATA=/var/lib/pg, EMPTY=]
            env_file: db.env
            volumes: ["./init:/docker-entrypoint-initdb.d:ro", "pgdata:/var/lib/pg"]
            ports: ["5432:5432", "127.0.0.1:8443:443/tcp", {target: 80, published: "8080"}]
            healthcheck: {test: ["CMD-SHELL", "pg_isready -U app"], interval: 2s, retries: 5}
            networks: {back: {aliases: [database]}}
            privileged: true
          app:
            build: {context: ./app, dockerfile: Containerfile}
            entrypoint: ["/bin/app", "--serve"]
            depends_on: {db: {condition: service_healthy}}
            user: "1000"
            working_dir: /srv
        """,
    )
    hosts, unhonoured = load_compose(file)
    db, app = hosts
    assert (db.name, db.roles, db.aliases, db.image) == (
        "db.example.test", ("db",), ("db", "database"), "postgres:16",
    )  # fmt: skip
    assert db.service is not None and app.service is not None
    assert db.service.command == ("postgres", "-c", "fsync=off")
    assert db.service.environment == {
        "USER": "app", "QUOTED": "a b", "PGDATA": "/var/lib/pg", "EMPTY": "",
    }  # fmt: skip
    assert db.service.volumes == (f"{tmp_path / 'init'}:/docker-entrypoint-initdb.d:ro",)
    assert db.disks == (Disk(name="pgdata", size=0, mount_point="/var/lib/pg"),)
    assert db.service.healthcheck == Healthcheck(
        test=("/bin/sh", "-c", "pg_isready -U app"), interval=2.0, timeout=30.0, retries=5
    )
    assert (app.name, app.image) == ("app", "localhost/phalanx-compose-app:latest")
    assert app.service.build == str(tmp_path / "app")
    assert app.service.dockerfile == str(tmp_path / "app" / "Containerfile")
    assert app.service.entrypoint == ("/bin/app", "--serve")
    assert app.service.healthy_before == ("db.example.test",)
    assert (app.service.user, app.service.working_dir) == ("1000", "/srv")
    # ports: phalanx forwards them itself (the engine forwards none into a
    # namespace phalanx made).
    assert db.service.ports == (
        PublishedPort(host_ip="0.0.0.0", published=5432, target=5432),
        PublishedPort(host_ip="127.0.0.1", published=8443, target=443),
        PublishedPort(host_ip="0.0.0.0", published=8080, target=80),
    )
    assert unhonoured == ("services.db.privileged",)


def test_a_cluster_file_names_its_compose_file_and_is_a_podman_cluster(tmp_path: Path) -> None:
    _write(tmp_path, "services:\n  web: {image: nginx}\n")
    (tmp_path / "c.yaml").write_text("name: c\ncompose: compose.yaml\n")
    cluster = load_cluster(tmp_path / "c.yaml")
    assert cluster.provider == "podman"
    assert [h.name for h in cluster.hosts] == ["web"]


def test_errors_name_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        """\
        services:
          web:
            image: nginx
            depends_on: [db]
          worker:
            image: busybox
            command: 3
            healthcheck: {test: "true", retries: 0}
          dns:
            image: busybox
            ports: ["53:53/udp"]
          any:
            image: busybox
            ports: ["8080"]
          many:
            image: busybox
            ports: ["9000-9009:9000-9009"]
        """,
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_compose(file)
    assert [str(e) for e in caught.value.errors] == [
        f"{file}:4: services.web.depends_on: no service 'db' in this file",
        f"{file}:7: services.worker.command: must be a command: a string or a list of strings",
        f"{file}:8: services.worker.healthcheck: retries: must be a whole number from 1",
        f"{file}:11: services.dns.ports: '53:53/udp': only TCP ports are forwarded, not udp",
        f"{file}:14: services.any.ports: '8080': give the published port too "
        "(PUBLISHED:TARGET): phalanx picks none, and every service is also reached at its "
        "own address on the bridge",
        f"{file}:17: services.many.ports: '9000-9009:9000-9009': '9000-9009' is not one port "
        "(1-65535; ranges are not forwarded)",
    ]
    (tmp_path / "c.yaml").write_text("name: c\ncompose: missing.yaml\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(tmp_path / "c.yaml")
    assert (
        str(caught.value)
        == f"{tmp_path / 'c.yaml'}:2: compose: no compose file {tmp_path / 'missing.yaml'}"
    )


def test_variables_are_interpolated_as_compose_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("TAG=1.2\nPORT=80\n")
    monkeypatch.setenv("PORT", "8080")  # the environment wins over .env
    monkeypatch.delenv("UNSET_IN_TEST", raising=False)
    file = _write(
        tmp_path,
        """\
        services:
          web:
            image: "nginx:${TAG}"
            command: ["sh", "-c", "echo $$HOME ${UNSET_IN_TEST:-fallback} ${PORT:+set}"]
            environment: {WHERE: "${PORT}"}
        """,
    )
    (web,), _ = load_compose(file)
    assert web.image == "nginx:1.2"
    assert web.service is not None
    assert web.service.command == ("sh", "-c", "echo $HOME fallback set")
    assert web.service.environment == {"WHERE": "8080"}
    _write(tmp_path, "services:\n  web:\n    image: x\n    user: ${UNSET_IN_TEST:?give a user}\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_compose(file)
    assert str(caught.value) == f"{file}:4: services.web.user: give a user"


def test_a_volume_source_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    file = _write(
        tmp_path,
        """\
        services:
          db:
            image: postgres:16
            volumes: [{type: volume, source: "pgdata\\n", target: /var/lib/pg}]
        """,
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_compose(file)
    assert "compose.yaml:4" in str(caught.value) and "volumes" in str(caught.value)
    assert "one printable line" in str(caught.value)
