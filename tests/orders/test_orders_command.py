"""``python -m examples.orders`` as a subprocess: each bad argument is one line on stderr, a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from orders_support import shop_command


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("demo", "--orders", "-5"), "--orders"),
        (("demo", "--orders", "0"), "--orders"),
        (("demo", "--orders", "many"), "--orders"),
        (("serve", "--db", "sqlite:///shop.db", "--port", "99999"), "--port"),
        (("serve", "--db", "sqlite:///shop.db", "--port", "-1"), "--port"),
        (("check", "--db", "mysql://shop"), "--db"),
        (("check", "--db", "sqlite:///a\x01b.db"), "--db"),
        (("setup", "--db", " "), "--db"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(arguments: tuple[str, ...], named: str) -> None:
    """Out-of-range numbers and URLs that name no database are refused at once, naming the option."""
    done = shop_command(*arguments)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]


def test_a_database_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    """``check`` on a file that is not SQLite names it, without a traceback."""
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n" * 100)
    done = shop_command("check", "--db", f"sqlite:///{junk}")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "junk.db" in done.stderr


def test_malformed_tokens_keep_the_server_from_starting(tmp_path: Path) -> None:
    """``ORDERS_API_TOKENS`` that is not a JSON object of long tokens: exit 2, naming the variable."""
    for tokens in ('["a"]', "{oops", '{"short": "ada"}'):
        done = shop_command("serve", "--db", f"sqlite:///{tmp_path / 's.db'}", ORDERS_API_TOKENS=tokens)
        assert done.returncode == 2, tokens
        assert "ORDERS_API_TOKENS" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
