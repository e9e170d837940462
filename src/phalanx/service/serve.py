"""`phalanx serve`: the coordinator service, in the foreground.

One process: the store (migrated at start; runs a killed service left
active become `interrupted`), the definition repos, the agent endpoint
(`/agent`, agents authenticated by the store's agent tokens), the REST API
(`/api`, OpenAPI at `/docs`), `/healthz`, the run queue and the schedules.
It logs to stderr and stops on SIGINT or SIGTERM (running runs are
cancelled, their finalizes get a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from phalanx.exits import EXIT_DEFINITIONS, EXIT_INFRASTRUCTURE, EXIT_OK

log = logging.getLogger("phalanx.service")

# How often a connected agent's heartbeats update its last-seen time in the
# store (connects and disconnects are written at once).
SEEN_EVERY = 30.0


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    parser = command(commands, "serve", serve)
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="the service's config file (phalanx.toml)"
    )
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a definitions repo folder to serve (repeatable; beside the config's repos)",
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8470)"
    )
    parser.add_argument("--data", type=Path, metavar="DIR", help="the data folder (./phalanx-data)")


def serve(args: argparse.Namespace) -> int:
    """Run the coordinator service: API, agents, queue and schedules (foreground)."""
    from phalanx.service.config import ConfigError, load_config

    _log_to_stderr()
    try:
        config = load_config(args.config, listen=args.listen, data_dir=args.data)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEFINITIONS
    if config.tls_cert is not None and config.tls_key is not None:
        from phalanx.service.ca import CAError, server_context

        try:
            server_context(config.tls_cert, config.tls_key)  # a bad pair fails here, not later
        except CAError as exc:
            print(f"error: tls_cert/tls_key: {exc}", file=sys.stderr)
            return EXIT_DEFINITIONS
    missing = [p for p in args.repo if not p.is_dir()]
    if missing:
        print(f"error: --repo {missing[0]}: no such folder", file=sys.stderr)
        return EXIT_DEFINITIONS
    try:
        asyncio.run(_main(config, list(args.repo)))
    except Exception as exc:
        from phalanx.store.failures import describe

        # A full, locked or damaged database: one line saying which and
        # where, not SQLAlchemy's traceback.
        why = describe(exc)
        if why is not None:
            log.error("cannot serve: database %s: %s", config.safe_database(), why)
            return EXIT_INFRASTRUCTURE
        if isinstance(exc, OSError):
            log.error("cannot serve: %s", exc)
            return EXIT_INFRASTRUCTURE
        raise
    return EXIT_OK


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("phalanx")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


async def _main(config: object, repos: list[Path]) -> None:
    from phalanx.coordinator.agents import AgentHub
    from phalanx.coordinator.auth import TokenBook
    from phalanx.coordinator.hypervisors import Hypervisors
    from phalanx.coordinator.runs import Coordinator
    from phalanx.coordinator.server import serving
    from phalanx.coordinator.sharedlisteners import SharedListeners
    from phalanx.host.__main__ import CA_ENV
    from phalanx.providers.agentenv import UnusableUser, agent_user, minimal_env
    from phalanx.service.agents import SeenRecorder
    from phalanx.service.alerts import SmtpSettings
    from phalanx.service.api import create_app
    from phalanx.service.app import Service, ServiceTokens
    from phalanx.service.auth import Auth
    from phalanx.service.config import ServiceConfig
    from phalanx.service.definitions import DefinitionSource, DirRepo, GitRepo, RepoSpec
    from phalanx.service.metrics import ServiceMetrics
    from phalanx.service.queue import QueueSettings, RunQueue
    from phalanx.service.revocation import watch_agent_tokens
    from phalanx.service.schedule import Scheduler
    from phalanx.store.store import Store

    assert isinstance(config, ServiceConfig)

    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    # The database and every run's files: the service's own, no one else's
    # (a stage of a local agent runs as another user: agentenv.py).
    os.chmod(data, 0o700)
    try:
        local_user = await asyncio.to_thread(agent_user, config.local_agent_user)
    except UnusableUser as exc:
        # Said loudly: stages of local clusters then run as the service's
        # own user, and could reach its data folder (README: Security model).
        log.warning("local agents run as this service's user: local_agent_user: %s", exc)
        local_user = None
    # Local agents work outside the data folder, in a folder of this
    # process's (theirs inside it), removed when the service stops.
    workroot = Path(tempfile.mkdtemp(prefix="phalanx-hosts-"))
    os.chmod(workroot, 0o711)  # the agents' user passes through to its own folders
    log.info("database %s, data in %s", config.safe_database(), data.resolve())
    store = await Store.open(config.database(), data_dir=data)
    seen = SeenRecorder(store.agents)
    seen.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if interrupted := await store.runs.mark_interrupted():
            log.warning(
                "marked %d run(s) the last service left active interrupted", len(interrupted)
            )
        auth = Auth(
            store.credentials,
            session_ttl=timedelta(hours=config.session_hours),
            audit=store.audit,
        )
        book = TokenBook()
        hub = AgentHub(
            ServiceTokens(book, auth),
            heartbeat_timeout=config.heartbeat_timeout,
            on_seen=seen,
            seen_interval=SEEN_EVERY,
        )
        smtp = None
        if config.smtp.host:
            smtp = SmtpSettings(
                host=config.smtp.host,
                port=config.smtp.port,
                starttls=config.smtp.starttls,
                user=config.smtp.user,
                password=config.smtp.password.get_secret_value() if config.smtp.password else None,
                sender=config.smtp.sender,
                timeout=config.smtp.timeout,
            )
        queue = RunQueue(
            store,
            QueueSettings(
                results=(data / "runs").resolve(),
                heartbeat_timeout=config.heartbeat_timeout,
                connect_timeout=config.connect_timeout,
                public_url=config.base_url(),
                keep_days=config.keep_days,
                keep_runs=config.keep_runs,
                smtp=smtp,
            ),
        )
        specs: list[RepoSpec] = []
        for repo in config.repos:
            if repo.type == "dir":
                assert repo.path is not None
                specs.append(DirRepo(repo.path))
            else:
                assert repo.url is not None
                specs.append(GitRepo(repo.url, repo.branch or "main", repo.poll_seconds))
        specs += [DirRepo(p) for p in repos]
        if not specs:
            log.warning("no definition repos: give --repo PATH or [[repos]] in the config")
        async with contextlib.AsyncExitStack() as stack:
            sources = [
                await stack.enter_async_context(DefinitionSource(spec, data_dir=data))
                for spec in specs
            ]
            metrics = ServiceMetrics(
                connected=lambda: sum(1 for link in hub.links.values() if link.connected.is_set()),
                queued=queue.queue_length,
            )
            queue.metrics = metrics
            hypervisors = Hypervisors(
                hub,
                book,
                verify=auth.verify_hypervisor_token,
                heartbeat_timeout=config.heartbeat_timeout,
            )
            service = Service(
                config, store, auth, hub, queue, sources, metrics=metrics, hypervisors=hypervisors
            )
            queue.on_pruned = service.caches.forget
            app = create_app(service)
            tls = config.tls_cert is not None and config.tls_key is not None
            async with serving(
                app,
                config.host,
                config.port,
                ssl_certfile=str(config.tls_cert) if tls else None,
                ssl_keyfile=str(config.tls_key) if tls else None,
            ) as port:
                hub.start()
                hypervisors.start()
                # What hosts call the coordinator (@coordinator@, and the
                # local agents' URL): the public URL's host when there is one.
                local = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
                public = urlsplit(config.public_url).hostname if config.public_url else None

                def listen(address: str) -> AbstractAsyncContextManager[int]:
                    # netns hosts reach the service on their bridge's address.
                    if config.host in ("0.0.0.0", "::", ""):
                        return contextlib.nullcontext(port)  # it listens there already
                    return serving(app, address, 0)

                # One listener per bridge address, shared by the runs on it and
                # held for a kept cluster's agents.
                hypervisors.listeners = SharedListeners(listen)
                also_listen = hypervisors.listeners.hold

                # Stages see none of the service's environment (its secrets).
                agent_env = minimal_env(os.environ)
                if tls:
                    # The agents this service starts itself (`provider: local`)
                    # connect over wss and trust the service's own certificate.
                    # No second listener: the certificate does not name a
                    # bridge's address, so netns hosts cannot verify it there.
                    certificate = Path(str(config.tls_cert)).resolve()
                    if local_user is not None:
                        # Theirs to read wherever the service keeps its own:
                        # a copy of the (public) certificate beside their folders.
                        copy = workroot / "coordinator.pem"
                        shutil.copyfile(certificate, copy)
                        os.chmod(copy, 0o644)
                        certificate = copy
                    agent_env[CA_ENV] = str(certificate)
                queue.start(
                    Coordinator(
                        hub,
                        book,
                        public or local,
                        port,
                        None if tls else also_listen,
                        lambda: hypervisors,
                        tls=tls,
                        agent_env=agent_env,
                        script_keys=service.script_keys,
                        agent_user=local_user,
                        agent_workroot=workroot,
                    )
                )
                # Everything made so far lives as long as the service (modules,
                # the app, its routes and templates): out of the collector's
                # full passes, which walked it all and held every request for
                # 0.1-0.3 s under load.
                gc.freeze()
                shown = f"[{config.host}]" if ":" in config.host else config.host
                scheme = "https" if tls else "http"
                log.info("listening on %s://%s:%d (API docs at /docs)", scheme, shown, port)
                scheduler = await stack.enter_async_context(Scheduler(service.fire))

                def reschedule() -> None:
                    scheduler.update(service.schedules())
                    service.next_runs = scheduler.next_runs()

                reschedule()
                watchers = [asyncio.create_task(_follow(source, reschedule)) for source in sources]
                refresher = asyncio.create_task(_refresh_next(service, scheduler))
                revocations = asyncio.create_task(watch_agent_tokens(hub, auth, hypervisors))
                try:
                    await stop.wait()
                finally:
                    log.info("stopping")
                    for task in (*watchers, refresher, revocations):
                        task.cancel()
                    await queue.stop()
                    await scheduler.stop()
                    await hypervisors.stop()  # kept clusters end
                    await hub.stop()
    finally:
        await seen.stop()  # the hub's last disconnects, written before the store closes
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await store.close()
        shutil.rmtree(workroot, ignore_errors=True)
    log.info("stopped")


async def _follow(source: object, changed: Callable[[], None]) -> None:
    from phalanx.service.definitions import DefinitionSource

    assert isinstance(source, DefinitionSource)
    # The source logs its own problems; a new catalog may change schedules.
    async for _ in source.changes():
        changed()


async def _refresh_next(service: object, scheduler: object) -> None:
    """Keep the next fire times the API shows current (a fire moves them on)."""
    from phalanx.service.app import Service
    from phalanx.service.schedule import Scheduler

    assert isinstance(service, Service) and isinstance(scheduler, Scheduler)
    while True:
        await asyncio.sleep(1.0)
        service.next_runs = scheduler.next_runs()
