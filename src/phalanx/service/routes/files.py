"""A run's files: ranged reads of a stage's output."""

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from phalanx import layout
from phalanx.service.routes.deps import ApiError, Reader, RunId, ServiceDep

MAX_READ = 1024 * 1024  # one ranged read of an output file
DEFAULT_READ = 64 * 1024

router = APIRouter(tags=["runs"])


@router.get(
    "/api/runs/{run_id}/output",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def output(
    run_id: RunId,
    who: Reader,
    service: ServiceDep,
    stage: Annotated[str, Query(min_length=1, max_length=200)],
    host: Annotated[str, Query(min_length=1, max_length=253)],
    case: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
    length: Annotated[int, Query(ge=1, le=MAX_READ)] = DEFAULT_READ,
) -> Response:
    summary = await service.store.runs.get(run_id)
    if summary is None:
        raise ApiError(404, f"no run {run_id!r}")
    if summary.folder is None:
        raise ApiError(404, f"run {run_id!r} has no files")
    folder = summary.folder.resolve()
    target = (folder / layout.output_path(case or None, stage, host)).resolve()
    if not target.is_relative_to(folder):
        raise ApiError(400, "that output is not inside the run's folder")
    try:
        chunk, size = await asyncio.to_thread(_read, target, offset, length)
    except OSError:  # missing, a folder, a name too long for the file system
        raise ApiError(404, "no output for that case, stage and host") from None
    return Response(
        chunk,
        media_type="application/octet-stream",
        headers={"X-Phalanx-Offset": str(offset), "X-Phalanx-Size": str(size)},
    )


def _read(path: Path, offset: int, length: int) -> tuple[bytes, int]:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(min(offset, size))
        return f.read(length), size
