"""`phalanx agent`'s options that are checked before it connects."""

from __future__ import annotations

import pytest

from phalanx.host.__main__ import main


@pytest.mark.parametrize("bad", ["rack", "=r1", ""])
def test_a_label_must_be_key_equals_value(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--coordinator", "ws://127.0.0.1:1/agent", "--name", "h1", "--label", bad])
    assert exited.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
