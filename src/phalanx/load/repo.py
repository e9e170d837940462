"""A definitions repository: `clusters/` and `test-suites/` (XrdTest layout).

`load_repo` reads everything and keeps every problem (for `validate` and
`list`); `find_suite` reads what one run needs and refuses to run if any of
it is broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.suite import definition_file, load_suite
from phalanx.model import Cluster, Suite, named

CLUSTER_SUFFIXES = (".yaml", ".yml", ".py")


@dataclass
class Repo:
    root: Path
    suites: dict[str, Suite] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    errors: list[DefinitionError] = field(default_factory=list)
    # Folders under test-suites/ with no suite file (XrdTest repos keep
    # helpers there, e.g. `utils/`): skipped as XrdTest skips them, not errors.
    skipped: list[Path] = field(default_factory=list)


def cluster_files(root: Path) -> list[Path]:
    """`clusters/<name>.yaml|.yml|.py`, and the older `clusters/<name>/<name>.py`."""
    folder = root / "clusters"
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix in CLUSTER_SUFFIXES and not entry.name.startswith("_"):
            found.append(entry)
        elif entry.is_dir() and (entry / f"{entry.name}.py").is_file():
            found.append(entry / f"{entry.name}.py")
    return found


def suite_folders(root: Path) -> list[Path]:
    folder = root / "test-suites"
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and definition_file(p) is not None]


def load_clusters(root: Path) -> tuple[dict[str, Cluster], dict[str, list[DefinitionError]]]:
    """The clusters that load, by name, and the problems of those that do not, by file name."""
    clusters: dict[str, Cluster] = {}
    errors: dict[str, list[DefinitionError]] = {}
    for file in cluster_files(root):
        try:
            cluster = load_cluster(file)
        except DefinitionErrors as exc:
            errors.setdefault(file.stem, []).extend(exc.errors)
            continue
        if cluster.name in clusters:
            first = clusters[cluster.name].source
            message = f"cluster {cluster.name!r} is also defined in {first}"
            errors.setdefault(file.stem, []).append(DefinitionError(file, None, "name", message))
            continue
        clusters[cluster.name] = cluster
    return clusters, errors


def load_repo(root: Path) -> Repo:
    """Every cluster and suite under `root`, and every problem found."""
    repo = Repo(root)
    if not (root / "test-suites").is_dir() and not (root / "clusters").is_dir():
        repo.errors.append(
            DefinitionError(
                root, None, None, "not a definitions repo (no test-suites/ or clusters/)"
            )
        )
        return repo
    repo.clusters, broken = load_clusters(root)
    repo.errors = [e for errors in broken.values() for e in errors]
    folder = root / "test-suites"
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir():
                continue
            if definition_file(entry) is None:
                repo.skipped.append(entry)
                continue
            try:
                suite = load_suite(entry, repo.clusters, root, broken)
            except DefinitionErrors as exc:
                # A broken cluster's own problems are listed once, above, not
                # again under every suite that uses it.
                reported = set(repo.errors)
                repo.errors.extend(e for e in exc.errors if e not in reported)
                continue
            if suite.name in repo.suites:
                other = repo.suites[suite.name].path
                repo.errors.append(
                    DefinitionError(
                        entry, None, "name", f"suite {suite.name!r} is also defined in {other}"
                    )
                )
                continue
            repo.suites[suite.name] = suite
    return repo


def repo_root(path: Path) -> Path | None:
    """The repo a path belongs to: the nearest folder holding `test-suites/` or `clusters/`."""
    for candidate in (path, *path.resolve().parents):
        if (candidate / "test-suites").is_dir() or (candidate / "clusters").is_dir():
            return candidate
    return None


def find_suite(path: Path, suite: str | None = None) -> Suite:
    """The suite to run: `path` is a suite folder, or a repo root with `suite` named.

    A broken neighbour does not stop the run; a broken cluster file does
    when it is the suite's own.
    """
    path = path.resolve() if path.exists() else path
    if not path.exists():
        raise _error(path, "no such file or folder")
    if suite is None:
        if definition_file(path) is None:
            if (path / "test-suites").is_dir():
                names = ", ".join(sorted(p.name for p in suite_folders(path))) or "none"
                raise _error(path, f"a definitions repo: pick a suite with -s (suites: {names})")
            raise _error(path, "not a suite folder")
        folder = path
        root = repo_root(path.parent) or path.parent
    else:
        if definition_file(path) is not None:
            raise _error(path, "is a suite folder; -s picks a suite of a repo root")
        root = path
        folder = _suite_folder(root, suite)
    clusters, broken = load_clusters(root)
    return load_suite(folder, clusters, root, broken)


def _suite_folder(root: Path, name: str) -> Path:
    """A suite by folder name, or else by the name its definition gives."""
    direct = root / "test-suites" / name
    if definition_file(direct) is not None:
        return direct
    repo = load_repo(root)
    if name in repo.suites and repo.suites[name].path is not None:
        path = repo.suites[name].path
        assert path is not None
        return path
    known = ", ".join(sorted(p.name for p in suite_folders(root))) or "none"
    raise _error(root, f"no suite {name!r} (suites: {known})", key="-s")


def check_cases(suite: Suite, names: list[str]) -> list[DefinitionError]:
    """One problem per `-t` name the suite does not have."""
    known = [c.name for c in suite.cases]
    return [
        DefinitionError(
            suite.path,
            None,
            "-t",
            f"suite {suite.name!r} has no case {name!r} (cases: {', '.join(known)})",
        )
        for name in names
        if not any(named(case, [name]) for case in known)
    ]


def _error(path: Path, message: str, key: str | None = None) -> DefinitionErrors:
    return DefinitionErrors([DefinitionError(path, None, key, message)])
