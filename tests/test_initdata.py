"""Initdata parsing, digest over the exact bytes, and Trustee's init_data_claims."""

from __future__ import annotations

import hashlib

import pytest

from veritee.errors import ParseError
from veritee.initdata import agent_policy_claims, parse_initdata

DOC = """version = "0.1.0"
algorithm = "sha384"
[data]
"aa.toml" = \'\'\'
[token_configs.kbs]
url = "http://127.0.0.1:8080"
\'\'\'
"cdh.toml" = \'\'\'
[kbc]
name = "cc_kbc"
url = "http://127.0.0.1:8080"
\'\'\'
"policy.rego" = \'\'\'
package agent_policy
policy_data := {
  "containers": [{"OCI": {"Process": {"User": {"UID": 0}}}}]
}
\'\'\'
"""


def test_digest_is_over_the_exact_bytes() -> None:
    doc = parse_initdata(DOC)
    assert doc.digest == hashlib.sha384(DOC.encode()).digest()
    assert parse_initdata(DOC + "\n").digest != doc.digest


def test_claims() -> None:
    claims = parse_initdata(DOC).claims()
    assert claims["aa.toml"]["token_configs"]["kbs"]["url"] == "http://127.0.0.1:8080"
    assert claims["cdh.toml"]["kbc"]["name"] == "cc_kbc"
    assert claims["agent_policy_claims"]["containers"][0]["OCI"]["Process"]["User"]["UID"] == 0
    assert "policy.rego" not in claims


@pytest.mark.parametrize(
    "text",
    [
        'version = "0.2.0"\nalgorithm = "sha384"\n',
        'version = "0.1.0"\nalgorithm = "sha-384"\n',
        'version = "0.1.0"\nalgorithm = "sha256"\n[data]\nx = 1\n',
        "not = toml = at all",
    ],
)
def test_bad_documents(text: str) -> None:
    with pytest.raises(ParseError):
        parse_initdata(text)


def test_agent_policy_without_policy_data() -> None:
    assert agent_policy_claims("package agent_policy\ndefault allow := true\n") is None
