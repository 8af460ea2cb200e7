"""The hub's pure auth rules: token matching, per-node refusals, audit rate limiting."""

from __future__ import annotations

from halswarm.auth_failures import FailureAudit, address_key
from halswarm.supervisor.hub_auth import AgentTokens, TokenMatch, bearer_token

SHARED = "shared-token-0000000000"
A_TOKEN = "node-a-token-000000000"
B_TOKEN = "node-b-token-000000000"


def tokens() -> AgentTokens:
    return AgentTokens(SHARED, {"node-a": A_TOKEN, "node-b": B_TOKEN})


def test_match_says_which_tokens_are_equal() -> None:
    t = tokens()
    assert t.match(SHARED.encode()) == TokenMatch(shared=True)
    assert t.match(A_TOKEN.encode()) == TokenMatch(nodes=frozenset({"node-a"}))
    assert not t.match(b"wrong-token-0000000000").accepted
    assert not t.match(None).accepted


def test_a_node_with_its_own_token_must_use_it() -> None:
    t = tokens()
    assert t.refusal(t.match(A_TOKEN.encode()), "node-a") is None
    shared = t.refusal(t.match(SHARED.encode()), "node-a")
    assert shared == "node node-a has its own token (server.node_tokens); the shared token is refused"
    other = t.refusal(t.match(B_TOKEN.encode()), "node-a")
    assert other == "this token is not node node-a's own token (server.node_tokens)"


def test_a_node_token_is_refused_for_another_node_id() -> None:
    t = tokens()
    reason = t.refusal(t.match(A_TOKEN.encode()), "node-c")
    assert reason == "this token belongs to another node (server.node_tokens), not to node-c"
    assert t.refusal(t.match(SHARED.encode()), "node-c") is None


def test_secrets_stay_out_of_the_repr() -> None:
    text = repr(tokens())
    assert SHARED not in text
    assert A_TOKEN not in text
    assert "node-a" in text


def test_bearer_token_parsing() -> None:
    assert bearer_token([(b"Authorization", b"Bearer abc ")]) == b"abc"
    assert bearer_token([(b"authorization", b"bearer abc")]) == b"abc"
    assert bearer_token([(b"Authorization", b"Basic abc")]) is None
    assert bearer_token([]) is None


def test_at_most_one_audit_row_per_address_per_interval_with_counts() -> None:
    audit = FailureAudit(interval=60.0)
    assert audit.failed("10.0.0.1", 0.0) == 1
    assert [audit.failed("10.0.0.1", t) for t in (1.0, 2.0, 59.9)] == [None, None, None]
    # Another address has its own budget.
    assert audit.failed("10.0.0.2", 30.0) == 1
    # The next row stands for itself and the three unrecorded failures before it.
    assert audit.failed("10.0.0.1", 60.0) == 4
    assert audit.failed("10.0.0.1", 61.0) is None


def test_audit_memory_is_bounded() -> None:
    audit = FailureAudit(interval=60.0, max_addresses=2)
    for i in range(5):
        assert audit.failed(f"10.0.0.{i}", 0.0) == 1
    assert len(audit) == 2


def test_audit_rows_are_capped_in_all_and_the_rest_reported_later() -> None:
    audit = FailureAudit(interval=60.0, max_rows=3)
    # A flood from ever new addresses: three rows, the rest counted as unlisted.
    rows = [audit.failed(f"10.1.0.{i}", now=1.0) for i in range(10)]
    assert rows == [1, 1, 1] + [None] * 7
    assert audit.take_unlisted() == 7
    assert audit.take_unlisted() == 0
    assert audit.failed("10.1.1.1", now=61.0) == 1  # a new minute: rows again


def test_ipv6_senders_are_counted_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("(disconnected)") == "(disconnected)"
