"""Initdata: parsing, the digest over the exact bytes, Trustee's init_data_claims, the
digest resized to each TEE's launch field, and kata's pod annotation both ways."""

from __future__ import annotations

import base64
import gzip
import hashlib
import shutil
import subprocess

import pytest
from datadir import TRUSTEE

from veritee.errors import InputError, ParseError
from veritee.initdata import (
    MAX_DOCUMENT_BYTES,
    agent_policy_claims,
    decode_annotation,
    digest_for_tee,
    encode_annotation,
    parse_initdata,
    resize_digest,
)

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


# --- a real upstream document ------------------------------------------------------------------

UPSTREAM = TRUSTEE / "integration-tests" / "tests" / "init-data-with-policy.toml"


def test_trustee_integration_document_parses_and_hashes() -> None:
    raw = UPSTREAM.read_bytes()
    doc = parse_initdata(raw.decode())
    assert (doc.version, doc.algorithm, list(doc.data)) == ("0.1.0", "sha256", ["policy.rego"])
    assert doc.digest == hashlib.sha256(raw).digest()
    assert doc.digest.hex() == (
        "0deccded0d87ec44702c7330fac3eb936b68dcca5c9f6b5df1fb3480c0b525ac"
    )
    # What Trustee's integration test asks its resource policy about this document.
    containers = doc.claims()["agent_policy_claims"]["containers"]
    assert containers[1]["OCI"]["Process"]["Args"][0] == "/opt/bitnami/scripts/nginx/entrypoint.sh"


# --- digests resized to each TEE's launch field ------------------------------------------------

# (field, size) per TEE, and per algorithm how a digest of that size fits: kata's
# adjust_digest zero-pads a short digest and keeps the first bytes of a long one.
FIELDS = {"tdx": ("MRCONFIGID", 48), "snp": ("HOST_DATA", 32), "sgx": ("CONFIGID", 64)}


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("tee", ["tdx", "snp", "sgx"])
def test_digest_for_each_tee(algorithm: str, tee: str) -> None:
    text = DOC.replace('algorithm = "sha384"', f'algorithm = "{algorithm}"')
    full = hashlib.new(algorithm, text.encode()).digest()
    field, value = digest_for_tee(parse_initdata(text), tee)
    name, size = FIELDS[tee]
    assert (field, len(value)) == (name, size)
    if len(full) <= size:
        assert value == full + bytes(size - len(full))
    else:
        assert value == full[:size]


def test_digest_for_tee_known_values() -> None:
    doc = parse_initdata(UPSTREAM.read_text())
    sha = doc.digest.hex()
    assert digest_for_tee(doc, "tdx") == ("MRCONFIGID", bytes.fromhex(sha + "00" * 16))
    assert digest_for_tee(doc, "snp") == ("HOST_DATA", bytes.fromhex(sha))
    assert digest_for_tee(doc, "sgx") == ("CONFIGID", bytes.fromhex(sha + "00" * 32))
    assert resize_digest(b"\x01\x02\x03", 2) == b"\x01\x02"
    assert resize_digest(b"\x01", 3) == b"\x01\x00\x00"
    with pytest.raises(InputError, match="binds no initdata"):
        digest_for_tee(doc, "az-snp-vtpm")


# --- the kata pod annotation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [DOC, UPSTREAM.read_text(), 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"k" = "é ✓"\n'],
    ids=["aa-cdh-policy", "trustee-integration", "unicode"],
)
def test_annotation_round_trip(text: str) -> None:
    value = encode_annotation(text)
    assert decode_annotation(value) == text
    assert encode_annotation(text) == value  # no time in the gzip header: one value per text
    # standard base64 of a gzip member, readable by any gzip
    assert gzip.decompress(base64.b64decode(value, validate=True)) == text.encode()


def test_annotation_made_by_the_documented_shell_pipeline() -> None:
    # CoCo's docs make the value with `gzip | base64 -w0`; decoding it gives the file back.
    if shutil.which("gzip") is None or shutil.which("base64") is None:
        pytest.skip("no gzip or base64 command here")
    made = subprocess.run(
        ["sh", "-c", 'gzip -c "$0" | base64 -w0', str(UPSTREAM)],
        check=True,
        capture_output=True,
    ).stdout.decode()
    assert decode_annotation(made) == UPSTREAM.read_text()
    assert decode_annotation(made[:76] + "\n" + made[76:] + "\n") == UPSTREAM.read_text()


def _packed(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data)).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "not standard base64"),
        ("QUJD", "not gzip data"),  # base64 of "ABC"
        (base64.b64encode(b"x" * 40).decode(), "not gzip data"),
        (_packed(DOC.encode())[:-12], "truncated"),
        ("", "truncated"),
        (_packed(b"\xff\xfe not utf-8"), "not UTF-8"),
        (base64.b64encode(gzip.compress(b"a") + b"junk").decode(), "bytes follow"),
    ],
    ids=["base64", "not-gzip", "not-gzip-long", "truncated", "empty", "utf-8", "trailing"],
)
def test_corrupt_annotations(value: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        decode_annotation(value)
    assert info.value.what == "initdata annotation"


def test_a_gzip_bomb_is_refused() -> None:
    bomb = _packed(b"\0" * (MAX_DOCUMENT_BYTES + 1))
    assert len(bomb) < 8 * 1024  # a few KiB that would inflate past the limit
    with pytest.raises(ParseError, match=f"larger than {MAX_DOCUMENT_BYTES} bytes"):
        decode_annotation(bomb)
    exactly = _packed(b"#" * 1000)
    assert len(decode_annotation(exactly, max_bytes=1000)) == 1000
    with pytest.raises(ParseError, match="larger than 999 bytes"):
        decode_annotation(exactly, max_bytes=999)
