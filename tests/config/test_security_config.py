"""Security keys: named API tokens with roles, per-node tokens, TLS files, origins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halswarm.config import parse_supervisor_config
from halswarm.config.security import ApiToken, origin_allowed, token_sha256
from tests.config.test_supervisor_config import TOKEN, example, problems_of

if TYPE_CHECKING:
    from pathlib import Path

    from halswarm.jsontypes import JSONObject, JSONValue

VIEWER = "viewer-token-0123456789"


def with_server(**server: JSONValue) -> JSONObject:
    raw = example()
    base = raw["server"]
    assert isinstance(base, dict)
    raw["server"] = {**base, **server}
    return raw


def test_named_tokens_load_with_roles_and_hashes() -> None:
    tokens: list[JSONValue] = [
        {"name": "grafana", "token": VIEWER, "role": "viewer"},
        {"name": "oncall", "token_sha256": token_sha256("operator-token-0123456789").upper(), "role": "operator"},
    ]
    config = parse_supervisor_config(with_server(tokens=tokens), env={})
    viewer, operator = config.server.tokens
    assert (viewer.name, viewer.role, viewer.digest()) == ("grafana", "viewer", token_sha256(VIEWER))
    assert operator.digest() == token_sha256("operator-token-0123456789")
    assert VIEWER not in repr(config)
    assert VIEWER in config.secrets()


def test_token_problems_name_the_entry() -> None:
    tokens: list[JSONValue] = [
        {"name": "a", "token": "short", "role": "viewer"},
        {"name": "b", "role": "viewer"},
        {"name": "c", "token": VIEWER, "token_sha256": token_sha256(VIEWER), "role": "admin"},
        {"name": "d", "token_sha256": "not-hex", "role": "admin"},
        {"name": "e", "token": TOKEN, "role": "viewer"},
        {"name": "e", "token": "another-token-0123456789", "role": "viewer"},
    ]
    assert problems_of(with_server(tokens=tokens)) == [
        "server.tokens[0].token: must be at least 16 characters",
        "server.tokens[1]: set exactly one of token and token_sha256",
        "server.tokens[2]: set exactly one of token and token_sha256",
        "server.tokens[3].token_sha256: must be 64 hex characters (sha256sum of the token)",
        "server.tokens[4]: the same token as server.auth_token (each token must identify one caller)",
        "server.tokens[5].name: 'e' is used twice",
    ]


def test_an_unknown_role_is_refused() -> None:
    (problem,) = problems_of(with_server(tokens=[{"name": "x", "token": VIEWER, "role": "root"}]))
    assert problem.startswith("server.tokens[0].role")


def test_node_tokens_are_secrets_and_checked() -> None:
    config = parse_supervisor_config(with_server(node_tokens={"build-01": "node-token-0123456789"}), env={})
    assert "node-token-0123456789" in config.secrets()
    assert "node-token-0123456789" not in repr(config)
    assert problems_of(with_server(node_tokens={"build-02": "short"})) == [
        "server.node_tokens.build-02: must be at least 16 characters"
    ]


def test_tls_needs_readable_files(tmp_path: Path) -> None:
    raw = example()
    raw["security"] = {"tls": {"enabled": True}}
    assert problems_of(raw) == [
        "security.tls.cert_path: required when security.tls.enabled is true",
        "security.tls.key_path: required when security.tls.enabled is true",
    ]
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    raw["security"] = {"tls": {"enabled": True, "cert_path": str(cert), "key_path": str(tmp_path / "nope.pem")}}
    assert problems_of(raw) == [f"security.tls.key_path: no such file: {tmp_path / 'nope.pem'}"]


def test_origins_must_be_origins() -> None:
    raw = example()
    raw["security"] = {"origin_allowlist": ["*", "https://ops.example.com", "https://x.example/path", "ops.example"]}
    problems = problems_of(raw)
    assert [p.split(":")[0] for p in problems] == [
        "security.origin_allowlist[2]",
        "security.origin_allowlist[3]",
    ]


def test_api_token_repr_hides_the_token() -> None:
    assert VIEWER not in repr(ApiToken("grafana", "viewer", token=VIEWER))


def test_origin_checks_apply_to_browsers_only() -> None:
    allow = ["https://ops.example.com", "http://localhost:3000"]
    assert origin_allowed(None, allow)  # agents, curl and halctl send no Origin
    assert origin_allowed("https://OPS.example.com:443", allow)
    assert origin_allowed("http://localhost:3000", allow)
    assert not origin_allowed("https://evil.example", allow)
    assert not origin_allowed("http://ops.example.com", allow)  # scheme matters
    assert not origin_allowed("null", allow)
    assert origin_allowed("https://anything.example", ["*"])


def test_a_node_token_must_be_nobody_elses() -> None:
    tokens: list[JSONValue] = [{"name": "dash", "token": VIEWER, "role": "viewer"}]
    same: JSONObject = {"a": "node-token-0123456789", "b": "node-token-0123456789", "c": TOKEN, "d": VIEWER}
    assert problems_of(with_server(tokens=tokens, node_tokens=same)) == [
        "server.node_tokens.b: the same token as server.node_tokens.a (each token must identify one caller)",
        "server.node_tokens.c: the same token as server.auth_token (each token must identify one caller)",
        "server.node_tokens.d: the same token as server.tokens (dash) (each token must identify one caller)",
    ]
