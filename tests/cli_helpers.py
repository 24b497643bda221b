"""What the CLI tests share: running ``lateint`` in-process and reading its one-line error."""
from __future__ import annotations

import pytest

from pyterrier_lateint import cli


def cli_error(capsys, *argv: str) -> str:
    """Run ``lateint ARGV`` expecting an error: exit status 2 and one line ``lateint: error: MESSAGE`` ending stderr
    (no traceback). Returns MESSAGE."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err and err.count("lateint: error:") == 1, err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("lateint: error: "), err
    return last[len("lateint: error: "):]
