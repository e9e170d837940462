"""A case's history judged by its `check:` model: the verdict and each
invalid key's window, as the case's record keeps them. Pure."""

from __future__ import annotations

import dataclasses
import math

from phalanx.history.formats import from_records
from phalanx.history.models import MODELS
from phalanx.history.ops import HistoryError, Op, pair
from phalanx.history.text import describe
from phalanx.history.verdict import KeyVerdict, key_name
from phalanx.model import CaseHistory, Window, WindowOp

NAME = "history.jsonl"  # how a record is named in a message: history.jsonl:N


def judge(history: CaseHistory, model: str) -> CaseHistory:
    """`history` with its verdict under `model`."""
    records = [{f.name: getattr(e, f.name) for f in dataclasses.fields(e)} for e in history.events]
    try:
        verdict = MODELS[model](pair(from_records(records, NAME)))
    except (HistoryError, ValueError) as exc:
        return dataclasses.replace(
            history, check=model, valid=False, verdict=f"history cannot be checked: {exc}"
        )
    if not verdict.keys:
        return dataclasses.replace(
            history, check=model, valid=False, verdict="no operations were recorded to check"
        )
    return dataclasses.replace(
        history,
        check=model,
        valid=verdict.valid,
        verdict=verdict.summary(),
        windows=tuple(_window(k) for k in verdict.invalid),
    )


def _window(bad: KeyVerdict) -> Window:
    return Window(
        key=key_name(bad.key) if bad.key is not None else None,
        reason=bad.reason,
        ops=tuple(_op(op) for op in sorted(bad.window, key=lambda o: (o.call, o.ret))),
    )


def _op(op: Op) -> WindowOp:
    return WindowOp(
        process=op.process,
        f=op.f,
        value=op.value,
        output=op.output,
        call=op.call,
        ret=None if math.isinf(op.ret) else op.ret,
        required=op.required,
        text=describe(op),
    )
