"""Bearer tokens: roles, the environment's tokens, malformed ones refused without being echoed."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigurationError
from conveyor.web.tokens import ApiTokens, Role, TokenTable, bearer_token

ADMIN = "admin-token-0123456789"
READER = "read-token-0123456789"


def test_each_token_finds_its_role_and_anything_else_finds_none() -> None:
    tokens = ApiTokens(admin=[ADMIN], read=[READER])
    assert tokens.role(f"Bearer {ADMIN}") is Role.ADMIN
    assert tokens.role(f"bearer   {READER} ") is Role.READ
    assert tokens.role(None) is None
    assert tokens.role(f"Basic {ADMIN}") is None
    assert tokens.role(f"Bearer {ADMIN}x") is None
    assert tokens.role("Bearer") is None


def test_admin_allows_everything_read_only_reading() -> None:
    assert Role.ADMIN.allows(Role.ADMIN)
    assert Role.ADMIN.allows(Role.READ)
    assert Role.READ.allows(Role.READ)
    assert not Role.READ.allows(Role.ADMIN)


def test_tokens_come_from_the_environment_comma_separated() -> None:
    tokens = ApiTokens.from_environment(
        {"CONVEYOR_ADMIN_TOKENS": f" {ADMIN} ", "CONVEYOR_READ_TOKENS": f"{READER}, other-read-token-0123"}
    )
    assert len(tokens) == 3
    assert tokens.role("Bearer other-read-token-0123") is Role.READ


def test_no_tokens_is_a_door_with_no_lock_and_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="CONVEYOR_ADMIN_TOKENS"):
        ApiTokens.from_environment({})


@pytest.mark.parametrize(
    "token", ["short", "has a space in it 0123", "naïve-token-0123456789", "tab\t0123456789abcdef"]
)
def test_a_malformed_token_is_refused_without_being_echoed(token: str) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 printable ASCII") as raised:
        ApiTokens(admin=[token])
    assert token not in str(raised.value)


def test_a_token_given_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="given twice"):
        ApiTokens(admin=[ADMIN], read=[ADMIN])


def test_a_table_maps_tokens_to_any_value() -> None:
    table = TokenTable([(ADMIN, "ada"), (READER, "bob")], where="ORDERS_API_TOKENS")
    assert table.find_bearer(f"Bearer {READER}") == "bob"
    assert table.find("unknown-token-0123456789") is None


def test_bearer_token_reads_only_the_bearer_scheme() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("Token abc") is None
    assert bearer_token("") is None
