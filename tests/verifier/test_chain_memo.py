"""The shared memo of verified chains: served only inside its window, bounded, thread-safe."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.verifier.chain_memo import ChainMemo, LruMemo, Validity, der_sha256

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def cert(not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "memo test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def crl(this_update: dt.datetime, next_update: dt.datetime) -> x509.CertificateRevocationList:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "memo test")])
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(this_update)
        .next_update(next_update)
        .sign(key, hashes.SHA256())
    )


def test_validity_is_the_intersection_of_certificates_and_crls() -> None:
    window = Validity.of(
        [cert(T0, T0 + 100 * DAY), cert(T0 + 10 * DAY, T0 + 50 * DAY)],
        [crl(T0 + 5 * DAY, T0 + 40 * DAY)],
    )
    assert window == Validity(T0 + 10 * DAY, T0 + 40 * DAY)
    assert T0 + 10 * DAY in window
    assert T0 + 40 * DAY in window
    assert T0 + 10 * DAY - dt.timedelta(seconds=1) not in window
    assert T0 + 40 * DAY + dt.timedelta(seconds=1) not in window


def test_chain_memo_serves_only_inside_the_window() -> None:
    memo: ChainMemo[str, str] = ChainMemo(4)
    memo.put("chain", "verdict", Validity(T0, T0 + DAY))
    assert memo.get("chain", T0) == "verdict"
    assert memo.get("chain", T0 + DAY) == "verdict"
    assert memo.get("chain", T0 - dt.timedelta(microseconds=1)) is None
    assert memo.get("chain", T0 + 2 * DAY) is None
    assert memo.get("other", T0) is None
    assert memo.hits == 2


def test_chain_memo_stores_no_empty_window() -> None:
    memo: ChainMemo[str, str] = ChainMemo(4)
    memo.put("chain", "verdict", Validity(T0 + DAY, T0))
    assert len(memo) == 0
    assert memo.get("chain", T0) is None


def test_lru_memo_forgets_the_least_recently_used() -> None:
    memo: LruMemo[int, int] = LruMemo(3)
    for key in (1, 2, 3):
        memo.put(key, key)
    assert memo.get(1) == 1  # 1 is now the most recent
    memo.put(4, 4)
    assert memo.get(2) is None
    assert [memo.get(k) for k in (1, 3, 4)] == [1, 3, 4]
    assert len(memo) == 3
    with pytest.raises(ValueError, match="max_size"):
        LruMemo(0)


def test_memo_under_concurrent_use_stays_bounded_and_consistent() -> None:
    memo: ChainMemo[int, int] = ChainMemo(16)
    window = Validity(T0, T0 + DAY)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(2000):
                key = (i * 7 + offset) % 64
                memo.put(key, key * 2, window)
                got = memo.get(key, T0)
                assert got is None or got == key * 2
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(memo) == 16


def test_der_sha256_is_by_content() -> None:
    c = cert(T0, T0 + DAY)
    again = x509.load_der_x509_certificate(c.public_bytes(Encoding.DER))
    assert der_sha256(again) == der_sha256(c)
    assert der_sha256(cert(T0, T0 + DAY)) != der_sha256(c)
