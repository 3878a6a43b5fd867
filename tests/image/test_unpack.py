"""Layer unpacking on real tar streams built by oci_build, plain and gzip.

The malicious layers run against a rootfs inside the test's tmp_path, next to a sentinel
directory ``outside`` holding a file with known bytes; every such test compares the whole
tmp_path tree outside the rootfs before and after (plus /etc/passwd where it is named).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import stat
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from oci_build import (
    LAYER_GZIP,
    LAYER_TAR,
    MTIME,
    Device,
    Dir,
    Fifo,
    File,
    Layer,
    Link,
    Symlink,
    layer_tar,
    opaque,
    whiteout,
)

from veritee.image.unpack import (
    LAYER_MEDIA_TYPES,
    CorruptLayer,
    DiffIdMismatch,
    LayerLimitExceeded,
    LayerUnpackError,
    UnpackedLayer,
    UnsafeLayerEntry,
    UnsupportedLayerType,
    unpack_layer,
)

SECRET = b"outside bytes, never to change\n"


@dataclass
class Box:
    """``tmp/bundle/rootfs`` next to ``tmp/outside/keep.txt``."""

    tmp: Path
    rootfs: Path
    outside: Path

    def apply(self, layer: Layer, *, compress: bool = True, **kwargs: object) -> UnpackedLayer:
        data = layer_tar(layer, compress=compress)
        media = LAYER_GZIP if compress else LAYER_TAR
        return unpack_layer(io.BytesIO(data), media, self.rootfs, **kwargs)  # type: ignore[arg-type]

    def snapshot(self) -> dict[str, object]:
        """Everything under tmp but the rootfs: names, kinds, bytes, link targets, inodes'
        link counts."""
        seen: dict[str, object] = {}
        for top, dirs, files in os.walk(self.tmp):
            here = Path(top)
            if here == self.rootfs:
                dirs.clear()
                continue
            for name in dirs + files:
                path = here / name
                if path == self.rootfs:
                    continue
                st = path.lstat()
                key = str(path.relative_to(self.tmp))
                if stat.S_ISLNK(st.st_mode):
                    seen[key] = ("link", os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    seen[key] = ("file", path.read_bytes(), st.st_nlink, stat.S_IMODE(st.st_mode))
                else:
                    seen[key] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
        return seen


@pytest.fixture
def box(tmp_path: Path) -> Box:
    rootfs = tmp_path / "bundle" / "rootfs"
    rootfs.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(SECRET)
    return Box(tmp_path, rootfs, outside)


@pytest.fixture
def sealed(box: Box) -> Iterator[Box]:
    """The box, with the check that nothing outside the rootfs changed."""
    before = box.snapshot()
    passwd = Path("/etc/passwd").lstat()
    yield box
    assert box.snapshot() == before
    assert (box.outside / "keep.txt").read_bytes() == SECRET
    after = Path("/etc/passwd").lstat()
    assert (after.st_ino, after.st_nlink, after.st_mtime_ns) == (
        passwd.st_ino, passwd.st_nlink, passwd.st_mtime_ns)


def tree(root: Path) -> dict[str, str]:
    """The rootfs as ``relative path → kind`` (symlinks with their target)."""
    out: dict[str, str] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            elif path.is_file():
                out[rel] = "file:" + path.read_bytes().decode()
            else:
                out[rel] = "other"
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- the ordinary layer ------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_files_dirs_links_modes_and_mtimes(box: Box, compress: bool) -> None:
    result = box.apply({
        "etc": Dir(mode=0o750, mtime=MTIME - 100),
        "etc/motd": File(b"hello\n", mode=0o640, mtime=MTIME - 5),
        "etc/motd.hard": Link("etc/motd"),
        "usr/bin/su": File(b"#!su", mode=0o4755),
        "usr/bin/wall": File(b"#!wall", mode=0o2711),
        "tmp": Dir(mode=0o1777),
        "ro": Dir(mode=0o555),
        "ro/inside": b"written after its read-only directory",
        "bin": Symlink("usr/bin"),
        "sh": Symlink("/bin/busybox"),
        "run/fifo": Fifo(),
    }, compress=compress)
    root = box.rootfs
    assert result.entries == 11
    assert result.skipped == ()
    assert (root / "etc/motd").read_bytes() == b"hello\n"
    assert mode(root / "etc/motd") == 0o640
    assert (root / "etc/motd").stat().st_mtime == MTIME - 5
    assert mode(root / "etc") == 0o750
    assert (root / "etc").stat().st_mtime == MTIME - 100  # set after its children
    hard = (root / "etc/motd.hard").stat()
    assert hard.st_ino == (root / "etc/motd").stat().st_ino
    assert hard.st_nlink == 2
    assert mode(root / "usr/bin/su") == 0o4755
    assert mode(root / "usr/bin/wall") == 0o2711
    assert mode(root / "usr") == 0o755  # an implicit parent
    assert mode(root / "tmp") == 0o1777
    assert mode(root / "ro") == 0o555
    assert (root / "ro/inside").read_bytes() == b"written after its read-only directory"
    assert os.readlink(root / "bin") == "usr/bin"
    assert os.readlink(root / "sh") == "/bin/busybox"  # created as text, never followed
    assert (root / "sh").lstat().st_mtime == MTIME
    fifo = (root / "run/fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode)
    assert stat.S_IMODE(fifo.st_mode) == 0o644


@pytest.mark.parametrize("media_type", sorted(
    t for t, c in LAYER_MEDIA_TYPES.items() if c == "gzip"))
def test_every_gzip_media_type(box: Box, media_type: str) -> None:
    data = layer_tar({"a": b"A"})
    unpack_layer(io.BytesIO(data), media_type, box.rootfs)
    assert (box.rootfs / "a").read_bytes() == b"A"


def test_replacing_entries_across_layers(box: Box) -> None:
    box.apply({"f2d": b"file", "d2f/x": b"x", "d2f/y/z": b"z", "keep/old": b"old",
               "l2f": Symlink("keep/old")})
    box.apply({
        "f2d": Dir(mode=0o700),           # a directory over a file replaces it
        "d2f": b"now a file",             # a file over a directory replaces the tree
        "keep": Dir(mode=0o711),          # a directory over a directory keeps its content
        "keep/new": b"new",
        "l2f": b"replaces the link",      # not written through it
    })
    root = box.rootfs
    assert (root / "f2d").is_dir()
    assert mode(root / "f2d") == 0o700
    assert (root / "d2f").read_bytes() == b"now a file"
    assert sorted(os.listdir(root / "keep")) == ["new", "old"]
    assert mode(root / "keep") == 0o711
    assert (root / "keep/old").read_bytes() == b"old"
    assert not (root / "l2f").is_symlink()
    assert (root / "l2f").read_bytes() == b"replaces the link"


def test_a_file_over_a_hard_link_leaves_the_other_name_alone(box: Box) -> None:
    box.apply({"a": b"shared", "b": Link("a")})
    box.apply({"b": b"new b"})
    assert (box.rootfs / "a").read_bytes() == b"shared"
    assert (box.rootfs / "b").read_bytes() == b"new b"


# --- diff_id -------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_diff_id_is_the_sha256_of_the_whole_uncompressed_stream(box: Box,
                                                               compress: bool) -> None:
    raw = layer_tar({"a": b"A", "d": Dir()}, compress=False) + bytes(4096)  # extra padding
    blob = gzip.compress(raw, mtime=0) if compress else raw
    want = "sha256:" + hashlib.sha256(raw).hexdigest()
    result = unpack_layer(io.BytesIO(blob), LAYER_GZIP if compress else LAYER_TAR,
                          box.rootfs, expected_diff_id=want)
    assert result.diff_id == want


def test_a_sha512_diff_id(box: Box) -> None:
    raw = layer_tar({"a": b"A"}, compress=False)
    want = "sha512:" + hashlib.sha512(raw).hexdigest()
    result = unpack_layer(io.BytesIO(raw), LAYER_TAR, box.rootfs, expected_diff_id=want)
    assert result.diff_id == want


def test_a_wrong_diff_id_is_refused(box: Box) -> None:
    raw = layer_tar({"a": b"A"}, compress=False)
    good = "sha256:" + hashlib.sha256(raw).hexdigest()
    wrong = "sha256:" + hashlib.sha256(raw + b"x").hexdigest()
    with pytest.raises(DiffIdMismatch) as caught:
        unpack_layer(io.BytesIO(gzip.compress(raw)), LAYER_GZIP, box.rootfs,
                     expected_diff_id=wrong)
    assert good in str(caught.value)
    assert wrong in str(caught.value)
    with pytest.raises(LayerUnpackError, match="unsupported algorithm"):
        unpack_layer(io.BytesIO(raw), LAYER_TAR, box.rootfs, expected_diff_id="md5:00")


# --- whiteouts -------------------------------------------------------------------------------

def test_whiteouts_remove_files_dirs_and_links_of_lower_layers(box: Box) -> None:
    box.apply({"etc/motd": b"m", "etc/keep": b"k", "var/cache/a/b": b"b", "var/log": b"l",
               "lnk": Symlink("etc/keep"), "gone/x": b"x"})
    result = box.apply({
        whiteout("etc/motd"): b"",
        whiteout("var/cache"): b"",
        whiteout("lnk"): b"",
        whiteout("nothing/there"): b"",   # a whiteout of nothing is no error
        "gone/.wh..wh.plnk": b"",         # aufs metadata is ignored
    })
    assert tree(box.rootfs) == {
        "etc": "dir", "etc/keep": "file:k", "var": "dir", "var/log": "file:l",
        "gone": "dir", "gone/x": "file:x",
    }
    assert result.entries == 5
    assert result.skipped == ("'gone/.wh..wh.plnk': aufs metadata, ignored",)


def test_a_whiteout_does_not_remove_what_the_same_layer_adds(box: Box) -> None:
    box.apply({"a": b"lower"})
    box.apply({"a": b"upper", whiteout("a"): b""})
    assert (box.rootfs / "a").read_bytes() == b"upper"


LOWER: Layer = {"d/old": b"o", "d/sub/old2": b"o2", "d/lnk": Symlink("/etc"), "e/x": b"x"}


@pytest.mark.parametrize("upper", [
    {opaque("d"): b"", "d/new": b"n", "d/sub/fresh": b"f"},
    {"d": Dir(), "d/new": b"n", "d/sub/fresh": b"f", opaque("d"): b""},
    {"d/new": b"n", opaque("d"): b"", "d/sub/fresh": b"f"},
], ids=["marker-first", "marker-last", "marker-between"])
def test_opaque_directories(box: Box, upper: Layer) -> None:
    box.apply(LOWER)
    box.apply(upper)
    assert tree(box.rootfs) == {
        "d": "dir", "d/new": "file:n", "d/sub": "dir", "d/sub/fresh": "file:f",
        "e": "dir", "e/x": "file:x",
    }


def test_an_opaque_rootfs_keeps_only_the_layer(box: Box) -> None:
    box.apply({"a/b": b"b", "c": b"c"})
    box.apply({"a/z": b"z", opaque(""): b""})  # ".wh..wh..opq" at the top
    assert tree(box.rootfs) == {"a": "dir", "a/z": "file:z"}


# --- malicious layers ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "lands"), [
    ("../escape", "escape"),
    ("../../escape", "escape"),
    ("/abs/escape", "abs/escape"),
    ("a/../../escape", "escape"),
    ("./../outside/keep.txt", "outside/keep.txt"),
    ("../../../../../../../../tmp/escape", "tmp/escape"),
])
@pytest.mark.parametrize("compress", [True, False])
def test_dotdot_and_absolute_names_are_normalised_into_the_rootfs(
        sealed: Box, name: str, lands: str, compress: bool) -> None:
    result = sealed.apply({name: b"payload"}, compress=compress)
    assert (sealed.rootfs / lands).read_bytes() == b"payload"
    assert result.skipped == ()


@pytest.mark.parametrize("same_layer", [True, False])
@pytest.mark.parametrize("target", ["sentinel", "/"])
def test_an_absolute_symlink_is_never_followed_out(sealed: Box, same_layer: bool,
                                                   target: str) -> None:
    # "evil -> /" and then "evil/<the sentinel's absolute path>/pwned" would land in the
    # sentinel if the link were followed on the host.
    if target == "/":
        link, through = "/", "evil" + str(sealed.outside)
    else:
        link, through = str(sealed.outside), "evil"
    layers: list[Layer] = [{"evil": Symlink(link)},
                           {f"{through}/pwned": b"x", f"{through}/keep.txt": b"clobber"}]
    if same_layer:
        layers = [{**layers[0], **layers[1]}]
    for layer in layers:
        sealed.apply(layer)
    inside = sealed.rootfs / str(sealed.outside).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"x"
    assert (inside / "keep.txt").read_bytes() == b"clobber"
    assert os.readlink(sealed.rootfs / "evil") == link


def test_a_relative_symlink_chain_stops_at_the_rootfs(sealed: Box) -> None:
    sealed.apply({"up": Symlink(".."), "up/up/x": b"x", "deep/up": Symlink("../../../.."),
                  "deep/up/outside/y": b"y"})
    assert (sealed.rootfs / "x").read_bytes() == b"x"
    assert (sealed.rootfs / "outside/y").read_bytes() == b"y"


def test_a_dangling_symlink_in_the_path_creates_its_target_inside(sealed: Box) -> None:
    # The target names a directory next to the sentinel that does not exist on the host, so a
    # regression would show in the tmp tree the fixture compares, never in a host path.
    target = str(sealed.outside / "lib")
    sealed.apply({"lib": Symlink(target), "lib/libc.so": b"c"})
    assert (sealed.rootfs / target.lstrip("/") / "libc.so").read_bytes() == b"c"
    assert os.readlink(sealed.rootfs / "lib") == target
    assert not (sealed.outside / "lib").exists()


def test_a_file_over_a_symlink_of_a_lower_layer_replaces_the_link(sealed: Box) -> None:
    sealed.apply({"y": Symlink(str(sealed.outside / "keep.txt"))})
    sealed.apply({"y": File(b"new y", mode=0o600)})
    assert not (sealed.rootfs / "y").is_symlink()
    assert (sealed.rootfs / "y").read_bytes() == b"new y"
    assert mode(sealed.rootfs / "y") == 0o600


def test_a_symlink_then_a_file_of_the_same_name_in_one_tar(sealed: Box) -> None:
    # A dict has one value per key: write the two members by hand.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("x")
        link.type, link.linkname = tarfile.SYMTYPE, str(sealed.outside / "keep.txt")
        tar.addfile(link)
        data = b"replaces the link"
        member = tarfile.TarInfo("x")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    unpack_layer(io.BytesIO(buffer.getvalue()), LAYER_TAR, sealed.rootfs)
    assert not (sealed.rootfs / "x").is_symlink()
    assert (sealed.rootfs / "x").read_bytes() == b"replaces the link"


def test_hard_links_to_outside_are_skipped(sealed: Box) -> None:
    result = sealed.apply({"passwd": Link("/etc/passwd"), "keep": Link("../outside/keep.txt"),
                           "abs": Link(str(sealed.outside / "keep.txt"))})
    assert tree(sealed.rootfs) == {}
    assert result.skipped == (
        "'passwd': hard link to '/etc/passwd': missing in the rootfs",
        "'keep': hard link to '../outside/keep.txt': missing in the rootfs",
        f"'abs': hard link to {str(sealed.outside / 'keep.txt')!r}: missing in the rootfs",
    )


def test_a_hard_link_to_etc_passwd_is_the_rootfs_one(sealed: Box) -> None:
    sealed.apply({"etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    result = sealed.apply({"pw": Link("/etc/passwd"), "pw2": Link("../../etc/passwd")})
    own = (sealed.rootfs / "etc/passwd").stat()
    assert (sealed.rootfs / "pw").stat().st_ino == own.st_ino
    assert (sealed.rootfs / "pw2").stat().st_ino == own.st_ino
    assert own.st_nlink == 3
    assert result.skipped == ()


def test_hard_links_through_or_to_symlinks_and_dirs_are_skipped(sealed: Box) -> None:
    result = sealed.apply({
        "evil": Symlink(str(sealed.outside)),
        "h1": Link("evil/keep.txt"),
        "real/file": b"r",
        "alias": Symlink("real"),
        "h2": Link("alias/file"),          # through an in-rootfs symlink: still refused
        "lnk": Symlink("real/file"),
        "h3": Link("lnk"),                 # to a symlink
        "h4": Link("real"),                # to a directory
        "p": Fifo(),
        "h5": Link("p"),                   # to a fifo
        "h6": Link(""),                    # to the rootfs
    })
    assert [s.split(":")[0] for s in result.skipped] == [
        "'h1'", "'h2'", "'h3'", "'h4'", "'h5'", "'h6'"]
    assert "without following a symlink" in result.skipped[0]
    assert "without following a symlink" in result.skipped[1]
    assert result.skipped[2].endswith("not a regular file in the rootfs")
    assert result.skipped[3].endswith("not a regular file in the rootfs")
    assert result.skipped[4].endswith("not a regular file in the rootfs")
    for name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        assert not os.path.lexists(sealed.rootfs / name)
    assert (sealed.rootfs / "real/file").stat().st_nlink == 1


@pytest.mark.parametrize("char", [True, False])
def test_device_nodes_are_never_created(sealed: Box, char: bool,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="veritee.image")
    result = sealed.apply({"dev": Dir(), "dev/sda": Device(8, 0, char=char),
                           "evil/../../../outside/dev": Device(1, 3, char=char)})
    kind = "character" if char else "block"
    assert result.skipped == (f"'dev/sda': {kind} device 8:0 not created",
                              f"'evil/../../../outside/dev': {kind} device 1:3 not created")
    assert tree(sealed.rootfs) == {"dev": "dir"}
    assert f"layer entry 'dev/sda' skipped: {kind} device 8:0 not created" in caplog.text


def test_whiteouts_and_opaque_markers_through_symlinks_stay_inside(sealed: Box) -> None:
    sealed.apply({"evil": Symlink(str(sealed.outside)), "d": Symlink(str(sealed.outside)),
                  "up": Symlink("..")})
    result = sealed.apply({
        whiteout("evil/keep.txt"): b"",                       # the rootfs' own path
        whiteout("up/up/outside"): b"",
        opaque("d"): b"",                                     # a link, not followed
        opaque("evil"): b"",
        opaque("up/outside"): b"",
        "../.wh.outside": b"",
    })
    assert result.skipped == ()
    assert sorted(os.listdir(sealed.rootfs)) == ["d", "evil", "up"]


def test_a_whiteout_of_dotdot_refuses_the_layer(sealed: Box) -> None:
    sealed.apply({"a/b": b"b"})
    for name in ("a/.wh...", "a/.wh..", ".wh.."):
        with pytest.raises(UnsafeLayerEntry, match="would remove a parent directory"):
            sealed.apply({name: b""})
    assert (sealed.rootfs / "a/b").read_bytes() == b"b"


def test_a_file_in_place_of_the_rootfs_refuses_the_layer(sealed: Box) -> None:
    for name, entry in (("..", b"x"), ("/", Symlink("/")), ("./", Fifo())):
        with pytest.raises(UnsafeLayerEntry, match="would replace the rootfs itself"):
            sealed.apply({name: entry})
    sealed.apply({"./": Dir(mode=0o700), "./a": b"a"})  # a directory entry "." is fine
    assert (sealed.rootfs / "a").read_bytes() == b"a"
    assert mode(sealed.rootfs) == 0o755


def test_a_symlink_loop_in_a_path_fails_naming_the_entry(sealed: Box) -> None:
    with pytest.raises(LayerUnpackError,
                       match="layer entry 'loop/x': too many levels of symbolic links"):
        sealed.apply({"loop": Symlink("loop"), "loop/x": b"x"})


def test_a_file_below_a_file_fails_naming_both(sealed: Box) -> None:
    with pytest.raises(LayerUnpackError) as caught:
        sealed.apply({"a": b"file", "a/b": b"x"})
    assert str(caught.value) == "layer entry 'a/b': 'a' is not a directory"


def test_control_characters_are_escaped(sealed: Box,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="veritee.image")
    result = sealed.apply({"\x1b[31mred\n": Device()})
    assert result.skipped == ("'\\x1b[31mred\\n': character device 1:3 not created",)
    assert "\x1b" not in caplog.text
    with pytest.raises(LayerUnpackError) as caught:
        sealed.apply({"f": b"", "f/\x07bell": b""})
    assert "\x07" not in str(caught.value)
    assert "'f/\\x07bell'" in str(caught.value)


def test_too_deep_nesting_is_refused(sealed: Box) -> None:
    with pytest.raises(LayerLimitExceeded, match="nests deeper than 256 directories"):
        sealed.apply({"d/" * 300 + "f": b"x"})


# --- limits and broken streams -------------------------------------------------------------

def test_a_layer_over_max_bytes_is_refused(sealed: Box) -> None:
    layer: Layer = {f"f{i}": bytes(8192) for i in range(8)}
    size = len(layer_tar(layer, compress=False))
    with pytest.raises(LayerLimitExceeded, match="larger than 20000 bytes uncompressed"):
        sealed.apply(layer, max_bytes=20_000)
    assert "f7" not in os.listdir(sealed.rootfs)
    sealed.apply(layer, max_bytes=size)  # exactly the limit is fine


def test_a_layer_over_max_entries_is_refused(sealed: Box) -> None:
    with pytest.raises(LayerLimitExceeded, match="more than 2 entries"):
        sealed.apply({"a": b"a", "b": b"b", "c": b"c", "d": b"d"}, max_entries=2)
    assert sorted(os.listdir(sealed.rootfs)) == ["a", "b"]


def test_a_huge_pax_header_is_refused(sealed: Box) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        tar.addfile(info, io.BytesIO())
    with pytest.raises(LayerLimitExceeded, match="tar extended header"):
        unpack_layer(io.BytesIO(buffer.getvalue()), LAYER_TAR, sealed.rootfs)


def _big_layer() -> bytes:
    return layer_tar({f"f{i}": os.urandom(4096) for i in range(16)}, compress=False)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage-after", "not-gzip",
                                    "empty"])
def test_a_broken_gzip_stream_is_a_clear_error(sealed: Box, damage: str) -> None:
    blob = gzip.compress(_big_layer(), mtime=0)
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "flipped":
        blob = blob[:40] + bytes(b ^ 0x5A for b in blob[40:200]) + blob[200:]
    elif damage == "garbage-after":
        blob += b"not gzip at all"
    elif damage == "not-gzip":
        blob = _big_layer()
    else:
        blob = b""
    with pytest.raises(CorruptLayer) as caught:
        unpack_layer(io.BytesIO(blob), LAYER_GZIP, sealed.rootfs)
    message = str(caught.value)
    assert message.startswith(("the layer stream cannot be read: ",
                               "the layer is not a readable tar stream: "))
    assert "Traceback" not in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("cut", [100, 512 + 100, 3 * 512 + 7, 512 * 9 + 200])
def test_a_truncated_plain_tar_is_a_clear_error(sealed: Box, cut: int) -> None:
    with pytest.raises(CorruptLayer):
        unpack_layer(io.BytesIO(_big_layer()[:cut]), LAYER_TAR, sealed.rootfs)


def test_a_damaged_header_after_the_first_is_a_clear_error(sealed: Box) -> None:
    raw = bytearray(layer_tar({"a": b"a" * 10, "b": b"b"}, compress=False))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        second = tar.getmember("b").offset
    assert second > 0
    assert raw[second + 257: second + 263] == b"ustar\x00"
    raw[second + 148: second + 156] = b"0000000\x00"  # a wrong checksum
    with pytest.raises(CorruptLayer, match=f"damaged or cut at offset {second}$"):
        unpack_layer(io.BytesIO(bytes(raw)), LAYER_TAR, sealed.rootfs)


def test_a_tar_ending_at_a_header_boundary_is_accepted(sealed: Box) -> None:
    raw = layer_tar({"a": b"a"}, compress=False)
    assert not any(raw[1024:])
    unpack_layer(io.BytesIO(raw[:1024]), LAYER_TAR, sealed.rootfs)  # no zero blocks
    assert (sealed.rootfs / "a").read_bytes() == b"a"


def test_unknown_media_types_are_refused_by_name(box: Box) -> None:
    for media in ("application/vnd.oci.image.layer.v1.tar+bzip2",
                  "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                  "application/octet-stream"):
        with pytest.raises(UnsupportedLayerType) as caught:
            unpack_layer(io.BytesIO(layer_tar({"a": b"a"})), media, box.rootfs)
        assert str(caught.value).startswith(f"layer media type {media!r} is not supported")
    assert os.listdir(box.rootfs) == []


@pytest.mark.parametrize("media", sorted(t for t, c in LAYER_MEDIA_TYPES.items()
                                         if c == "zstd"))
def test_zstd_without_a_decompressor_is_refused_by_name(
        box: Box, media: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(UnsupportedLayerType) as caught:
        unpack_layer(io.BytesIO(b"(\xb5/\xfd"), media, box.rootfs)
    assert str(caught.value) == (
        f"layer media type {media!r} needs a zstd decompressor and neither Python's "
        "compression.zstd nor the zstandard package is installed")


def test_a_missing_rootfs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LayerUnpackError, match="No such file or directory"):
        unpack_layer(io.BytesIO(layer_tar({"a": b"a"})), LAYER_GZIP, tmp_path / "nope")


def test_the_layer_summary_is_logged(box: Box, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="veritee.image")
    result = box.apply({"a": b"a", "null": Device()})
    records = [r for r in caplog.records if r.name == "veritee.image"]
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].getMessage() == (
        f"layer {result.diff_id}: 2 entries unpacked into {box.rootfs}, 1 skipped")


def test_layers_stack_like_an_image(box: Box) -> None:
    layers: list[Layer] = [
        {"bin": Dir(), "bin/busybox": File(b"bb", mode=0o755), "bin/sh": Link("bin/busybox"),
         "etc/os-release": b"v1", "etc/motd": b"hi"},
        {whiteout("etc/motd"): b"", "etc/os-release": b"v2", "usr/bin": Symlink("/bin")},
        {"usr/bin/env": b"env"},  # through the link: lands in bin/
    ]
    for layer in layers:
        box.apply(layer)
    assert tree(box.rootfs) == {
        "bin": "dir", "bin/busybox": "file:bb", "bin/sh": "file:bb", "bin/env": "file:env",
        "etc": "dir", "etc/os-release": "file:v2", "usr": "dir", "usr/bin": "-> /bin",
    }
