"""KBS resources: Trustee's path rule, both LocalFs layouts, and the key-value backend."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from veritee.kbs.errors import PluginInternalError
from veritee.kbs.resources import (
    FLAT_SEPARATOR,
    KvResourceBackend,
    LocalFsBackend,
    resource_key,
    validate_resource_path,
)
from veritee.store.kv import MemoryStore, SqliteStore

# Trustee's own cases (kbs/src/plugins/implementations/resource/backend.rs tests) plus ours.
VALID = [
    ["default", "1", "2"],
    ["default", "key", "1"],
    ["a-b_c", "x.y", "tag-1.0"],
    ["default", "container-policy", "insecure-accept-all"],
    ["0", "_", "-"],
]
INVALID = [
    [],
    ["default"],
    ["default", "1"],
    ["default", "1", "2", "3"],
    ["", "1", "2"],
    ["default", "", "2"],
    ["default", "1", ""],
    ["..", "1", "2"],
    ["default", "..", "2"],
    ["default", "1", ".."],
    [".hidden", "1", "2"],
    ["default", ".1", "2"],
    ["default", "1", ".2"],
    ["default", "%2e%2e", "2"],
    ["default", "1", "%2F"],
    ["de/fault", "1", "2"],
    ["default", "1\n", "2"],
    ["default", "1", "2\n"],
    ["default", "1", "tag\x00"],
    ["défaut", "1", "2"],
    ["default", "1", "a b"],
    ["default", "1", "a\\x2Fb"],
]


@pytest.mark.parametrize("segments", VALID)
def test_valid_paths(segments: list[str]) -> None:
    assert validate_resource_path(segments) == tuple(segments)


@pytest.mark.parametrize("segments", INVALID)
def test_invalid_paths_are_plugin_internal_error(segments: list[str]) -> None:
    with pytest.raises(PluginInternalError) as info:
        validate_resource_path(segments)
    assert info.value.status == 401
    assert info.value.body() == {
        "type": "https://github.com/confidential-containers/kbs/errors/PluginInternalError",
        "detail": "Plugin internal error",
    }


def test_a_string_is_not_a_sequence_of_segments() -> None:
    with pytest.raises(PluginInternalError):
        validate_resource_path("abc")
    assert resource_key("a", "b", "c") == "a/b/c"


# -- LocalFs ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_localfs_round_trip(tmp_path: Path, layout: str) -> None:
    backend = LocalFsBackend(tmp_path / "repo", layout=layout)  # type: ignore[arg-type]
    assert backend.get("default", "key", "1") is None
    assert backend.list() == []
    backend.put("default", "key", "1", b"secret")
    backend.put("default", "key", "2", b"\x00\xff")
    assert backend.get("default", "key", "1") == b"secret"
    assert backend.get("default", "key", "2") == b"\x00\xff"
    assert backend.list() == [("default", "key", "1"), ("default", "key", "2")]
    backend.put("default", "key", "1", b"replaced")
    assert backend.get("default", "key", "1") == b"replaced"
    assert backend.delete("default", "key", "1") is True
    assert backend.delete("default", "key", "1") is False
    assert backend.get("default", "key", "1") is None
    assert backend.list() == [("default", "key", "2")]


def test_nested_layout_on_disk_is_trustee_legacy(tmp_path: Path) -> None:
    LocalFsBackend(tmp_path, layout="nested").put("default", "key", "1", b"v")
    path = tmp_path / "default" / "key" / "1"
    assert path.read_bytes() == b"v"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]


def test_flat_layout_on_disk_is_trustee_storage_backend(tmp_path: Path) -> None:
    LocalFsBackend(tmp_path, layout="flat").put("default", "key", "1", b"v")
    name = "default\\x2Fkey\\x2F1"
    assert FLAT_SEPARATOR == "\\x2F"
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == b"v"
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_seed_002_files_written_by_hand_are_served(tmp_path: Path) -> None:
    """The user does ``mkdir -p …/repository/default/container-policy && cat > …``."""
    repo = tmp_path / "opt" / "trustee" / "kbs" / "repository"
    (repo / "default" / "container-policy").mkdir(parents=True)
    policy = b'{ "default": [{"type": "insecureAcceptAnything"}], "transports": {} }\n'
    (repo / "default" / "container-policy" / "insecure-accept-all").write_bytes(policy)
    for layout in ("nested", "flat"):
        backend = LocalFsBackend(repo, layout=layout)  # type: ignore[arg-type]
        assert backend.get("default", "container-policy", "insecure-accept-all") == policy
        assert backend.list() == [("default", "container-policy", "insecure-accept-all")]


def test_reads_fall_back_to_the_other_layout(tmp_path: Path) -> None:
    (tmp_path / "default\\x2Fkey\\x2Fflat").write_bytes(b"from v0.19+")
    (tmp_path / "default" / "key").mkdir(parents=True)
    (tmp_path / "default" / "key" / "nested").write_bytes(b"from v0.18-")
    for layout in ("nested", "flat"):
        backend = LocalFsBackend(tmp_path, layout=layout)  # type: ignore[arg-type]
        assert backend.get("default", "key", "flat") == b"from v0.19+"
        assert backend.get("default", "key", "nested") == b"from v0.18-"
        assert backend.list() == [("default", "key", "flat"), ("default", "key", "nested")]


def test_write_moves_a_resource_to_the_configured_layout(tmp_path: Path) -> None:
    (tmp_path / "default" / "key").mkdir(parents=True)
    (tmp_path / "default" / "key" / "1").write_bytes(b"old")
    flat = LocalFsBackend(tmp_path, layout="flat")
    flat.put("default", "key", "1", b"new")
    assert not (tmp_path / "default" / "key" / "1").exists()
    assert (tmp_path / "default\\x2Fkey\\x2F1").read_bytes() == b"new"
    assert LocalFsBackend(tmp_path, layout="nested").get("default", "key", "1") == b"new"


def test_delete_removes_both_layouts(tmp_path: Path) -> None:
    (tmp_path / "default\\x2Fkey\\x2F1").write_bytes(b"a")
    (tmp_path / "default" / "key").mkdir(parents=True)
    (tmp_path / "default" / "key" / "1").write_bytes(b"b")
    backend = LocalFsBackend(tmp_path)
    assert backend.delete("default", "key", "1")
    assert backend.get("default", "key", "1") is None
    assert backend.list() == []


def test_list_ignores_foreign_and_temporary_files(tmp_path: Path) -> None:
    backend = LocalFsBackend(tmp_path)
    backend.put("default", "key", "1", b"v")
    (tmp_path / ".tmp-abc").write_bytes(b"partial")
    (tmp_path / "default" / "key" / ".tmp-xyz").write_bytes(b"partial")
    (tmp_path / "README").write_bytes(b"x")
    (tmp_path / "a\\x2Fb").write_bytes(b"two segments")
    (tmp_path / "default" / "key" / "deeper").mkdir()
    (tmp_path / "default" / "key" / "deeper" / "x").write_bytes(b"four segments")
    assert backend.list() == [("default", "key", "1")]


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    backend = LocalFsBackend(tmp_path, layout="flat")
    for i in range(5):
        backend.put("default", "key", "1", str(i).encode())
    assert [p.name for p in tmp_path.iterdir()] == ["default\\x2Fkey\\x2F1"]


@pytest.mark.parametrize("segments", INVALID[4:])
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_traversal_is_impossible(tmp_path: Path, layout: str, segments: list[str]) -> None:
    backend = LocalFsBackend(tmp_path / "repo", layout=layout)  # type: ignore[arg-type]
    (tmp_path / "secret").write_bytes(b"outside")
    repo, type_, tag = segments
    with pytest.raises(PluginInternalError):
        backend.get(repo, type_, tag)
    with pytest.raises(PluginInternalError):
        backend.put(repo, type_, tag, b"x")
    with pytest.raises(PluginInternalError):
        backend.delete(repo, type_, tag)
    assert (tmp_path / "secret").read_bytes() == b"outside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_symlink_leaving_the_directory_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "default").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1").write_bytes(b"not a resource")
    (repo / "default" / "key").symlink_to(outside, target_is_directory=True)
    backend = LocalFsBackend(repo)
    with pytest.raises(PluginInternalError):
        backend.get("default", "key", "1")
    with pytest.raises(PluginInternalError):
        backend.put("default", "key", "2", b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["1"]


def test_symlink_inside_the_directory_is_served(tmp_path: Path) -> None:
    """Kubernetes secret volumes are symlinks into ``..data`` inside the mount."""
    repo = tmp_path / "repo"
    data = repo / "default" / "key" / "..data"
    data.mkdir(parents=True)
    (data / "1").write_bytes(b"mounted")
    (repo / "default" / "key" / "1").symlink_to(Path("..data") / "1")
    assert LocalFsBackend(repo).get("default", "key", "1") == b"mounted"


def test_unreadable_resource_is_not_served(tmp_path: Path) -> None:
    # A symlink loop where the resource file should be cannot be read, even by root; it is
    # reported as missing, which the KBS answers with PluginInternalError.
    (tmp_path / "default" / "key").mkdir(parents=True)
    (tmp_path / "default" / "key" / "1").symlink_to("1")
    assert LocalFsBackend(tmp_path).get("default", "key", "1") is None


def test_io_failure_is_plugin_internal_error(tmp_path: Path) -> None:
    (tmp_path / "default").write_bytes(b"a file where a directory should be")
    backend = LocalFsBackend(tmp_path)
    with pytest.raises(PluginInternalError):
        backend.put("default", "key", "1", b"v")


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        LocalFsBackend(tmp_path, layout="deep")  # type: ignore[arg-type]


# -- key-value ----------------------------------------------------------------


def test_kv_backend_memory() -> None:
    store = MemoryStore()
    backend = KvResourceBackend(store)
    assert backend.get("default", "key", "1") is None
    backend.put("default", "key", "1", b"a")
    backend.put("other", "cert", "x.pem", b"b")
    assert backend.get("default", "key", "1") == b"a"
    assert backend.list() == [("default", "key", "1"), ("other", "cert", "x.pem")]
    assert store.get("resource", "default/key/1") is not None
    assert backend.delete("default", "key", "1")
    assert not backend.delete("default", "key", "1")
    with pytest.raises(PluginInternalError):
        backend.put("..", "key", "1", b"x")


def test_kv_backend_sqlite_persists(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "kbs.db") as store:
        KvResourceBackend(store, namespace="repository").put("default", "key", "1", b"v")
    with SqliteStore(tmp_path / "kbs.db") as store:
        backend = KvResourceBackend(store, namespace="repository")
        assert backend.get("default", "key", "1") == b"v"
        assert KvResourceBackend(store).get("default", "key", "1") is None


def test_kv_backend_postgres_through_open_store(postgres_dsn: str) -> None:
    import uuid

    from veritee.store.postgres import PostgresStore, open_store

    store = open_store(postgres_dsn)
    assert isinstance(store, PostgresStore)
    namespace = f"resource-{uuid.uuid4().hex[:12]}"
    try:
        backend = KvResourceBackend(store, namespace=namespace)
        backend.put("default", "key", "1", b"\x00pg\xff")
        assert backend.get("default", "key", "1") == b"\x00pg\xff"
        assert backend.list() == [("default", "key", "1")]
        assert backend.delete("default", "key", "1")
        assert backend.list() == []
    finally:
        store.close()
