"""Intel TCB evaluation from already-verified tcbInfo and QE identity JSON.

dcap-qvl 0.7.0 verifies every signature, certificate chain and CRL of an Intel
quote and computes its TCB status, but it neither says *which* TDX module
identity applied nor returns a status for a debug TD (it rejects those as its
very last step, after every TCB check passed).  This module re-does only the
TCB part, from the ``tcbInfo`` and ``enclaveIdentity`` texts that dcap-qvl has
already verified, and reproduces dcap-qvl 0.7.0's algorithm exactly:

1. QE level: the first QE identity ``tcbLevels`` entry, **in JSON order**, with
   ``isvsvn <= QE ISVSVN``.  Its status must be one of UpToDate, OutOfDate,
   ConfigurationNeeded, Revoked, OutOfDateConfigurationNeeded.
2. Platform level: ``tcbLevels`` sorted descending (stable) by (SGX components,
   pcesvn, TDX components; the last only for TDX tcbInfo v3+), then the first
   level with PCK PCESVN >= pcesvn, every **CPUSVN byte** >= its SGX component
   and, for TDX, every ``TEE_TCB_SVN[i]`` >= its TDX component, starting at
   ``i = 2`` when ``TEE_TCB_SVN[1] > 0`` (indices 0 and 1 are then judged by the
   module identity) and at ``i = 0`` otherwise.
3. TDX module (``TEE_TCB_SVN[1] > 0`` only): the ``tdxModuleIdentities`` entry
   whose id equals ``"TDX_%02X" % TEE_TCB_SVN[1]`` case-insensitively, then its
   first ``tcbLevels`` entry, **in JSON order**, with ``isvsvn <=
   TEE_TCB_SVN[0]`` (status UpToDate, OutOfDate or Revoked).  The platform
   status is converged with it, its advisories are appended and the earlier
   tcbDate is kept.
4. The result converges the (module-converged) platform status with the QE
   status and appends the QE advisories.  Convergence: a Revoked component gives
   Revoked; an OutOfDate component turns UpToDate/SWHardeningNeeded into
   OutOfDate and ConfigurationNeeded/ConfigurationAndSWHardeningNeeded into
   OutOfDateConfigurationNeeded; anything else leaves the platform status.
5. TD 1.5 (``tee_tcb_svn2`` given): steps 2-3 are repeated on TEE_TCB_SVN2 (it
   must be appraisable too), converged with the QE status, and a launch status
   of OutOfDate[ConfigurationNeeded] with a current status of UpToDate,
   SWHardeningNeeded, ConfigurationNeeded or ConfigurationAndSWHardeningNeeded
   becomes TDRelaunchAdvised[ConfigurationNeeded].

Deliberate differences from dcap-qvl, all in what is *returned*:

- dcap-qvl raises "TCB status is invalid: Revoked" for a Revoked result (launch
  or TD 1.5 current TCB); here the status ``"Revoked"`` is returned and the
  caller must reject it.
- Debug attributes, FMSPC, MRSIGNERSEAM/SEAMATTRIBUTES and every signature are
  not looked at: that is dcap-qvl's job (and the quote parser's).

Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from veritee.errors import ParseError, VerificationError

__all__ = [
    "CONFIGURATION_AND_SW_HARDENING_NEEDED",
    "CONFIGURATION_NEEDED",
    "OUT_OF_DATE",
    "OUT_OF_DATE_CONFIGURATION_NEEDED",
    "REVOKED",
    "SW_HARDENING_NEEDED",
    "TCB_STATUSES",
    "TD_RELAUNCH_ADVISED",
    "TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED",
    "UP_TO_DATE",
    "ModuleIdentity",
    "TcbEvaluation",
    "TcbNotSupported",
    "TcbStatusUnrecognized",
    "evaluate_tcb",
]

UP_TO_DATE: Final = "UpToDate"
SW_HARDENING_NEEDED: Final = "SWHardeningNeeded"
CONFIGURATION_NEEDED: Final = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED: Final = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE: Final = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED: Final = "OutOfDateConfigurationNeeded"
REVOKED: Final = "Revoked"
TD_RELAUNCH_ADVISED: Final = "TDRelaunchAdvised"
TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED: Final = "TDRelaunchAdvisedConfigurationNeeded"

#: Every status string dcap-qvl's ``TcbStatus`` enum parses; anything else in
#: the JSON is a decode error.
TCB_STATUSES: Final[frozenset[str]] = frozenset(
    {
        UP_TO_DATE,
        SW_HARDENING_NEEDED,
        CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
        OUT_OF_DATE,
        OUT_OF_DATE_CONFIGURATION_NEEDED,
        REVOKED,
        TD_RELAUNCH_ADVISED,
        TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)

# The statuses Intel QVL (and dcap-qvl) accept on a *matched* level of each structure.
_PLATFORM_STATUSES: Final = frozenset(
    {
        UP_TO_DATE,
        OUT_OF_DATE,
        CONFIGURATION_NEEDED,
        REVOKED,
        OUT_OF_DATE_CONFIGURATION_NEEDED,
        SW_HARDENING_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
    }
)
_MODULE_STATUSES: Final = frozenset({UP_TO_DATE, OUT_OF_DATE, REVOKED})
_QE_STATUSES: Final = frozenset(
    {UP_TO_DATE, OUT_OF_DATE, CONFIGURATION_NEEDED, REVOKED, OUT_OF_DATE_CONFIGURATION_NEEDED}
)

_SVN_COUNT: Final = 16
_U8: Final = 0xFF
_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF

_TCB_INFO: Final = "tcb info"
_QE_IDENTITY: Final = "qe identity"

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


# --------------------------------------------------------------------------------------
# Public result types and errors
# --------------------------------------------------------------------------------------


class TcbNotSupported(VerificationError):
    """No TCB level applies (Intel QVL's TCB_NOT_SUPPORTED / TDX_MODULE_MISMATCH).

    ``step`` is ``"tcb_level"`` when no platform level matches (for TEE_TCB_SVN or,
    in a TD 1.5, TEE_TCB_SVN2) or the QE ISVSVN is below every QE level, and
    ``"tdx_module"`` when the tcbInfo has no module identity for TEE_TCB_SVN[1] or
    the module SVN (TEE_TCB_SVN[0]) is below every level of that identity.
    """

    def __init__(self, message: str, *, step: str = "tcb_level") -> None:
        super().__init__(step, message)


class TcbStatusUnrecognized(VerificationError):
    """The matched level carries a status Intel does not allow in that structure.

    (Intel QVL's TCB_UNRECOGNIZED_STATUS; dcap-qvl's "Unrecognized TCB status".)
    For example SWHardeningNeeded on a QE identity level, ConfigurationNeeded on a
    TDX module level or TDRelaunchAdvised anywhere.  ``step`` is ``"tcb_level"``,
    or ``"tdx_module"`` for a module identity level.
    """

    def __init__(self, message: str, *, step: str = "tcb_level") -> None:
        super().__init__(step, message)


@dataclass(frozen=True)
class ModuleIdentity:
    """The TDX module identity that applied to TEE_TCB_SVN.

    With ``TEE_TCB_SVN[1] > 0`` this is the ``tdxModuleIdentities`` entry
    ``id == "TDX_%02X" % TEE_TCB_SVN[1]`` (``id`` given in that canonical upper-case
    form) and its matched ``tcbLevels`` entry (``isvsvn``, ``tcb_status``,
    ``tcb_date``, ``advisory_ids`` are that level's own values, before any
    convergence).  With ``TEE_TCB_SVN[1] == 0`` it is the tcbInfo's base
    ``tdxModule``: ``id`` is ``"TDX_00"`` and the level fields are ``None``/empty,
    because no module TCB level is evaluated then.  ``mrsigner`` is the expected
    MRSIGNERSEAM as 96 upper-case hex digits.
    """

    id: str
    mrsigner: str
    isvsvn: int | None
    tcb_status: str | None
    tcb_date: str | None
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TcbEvaluation:
    """The TCB verdict for one quote, field for field what dcap-qvl 0.7.0 computes.

    - ``status``: the final converged status (dcap-qvl's ``status``), or
      ``"Revoked"`` where dcap-qvl raises "TCB status is invalid: Revoked".
    - ``advisory_ids``: platform level, then module level, then QE level
      advisories, each appended only when not yet present (dcap-qvl's order).
    - ``tcb_date``: the platform level's tcbDate, or the module level's when that
      is earlier (dcap-qvl's ``platform.tcb_level.tcbDate``).
    - ``platform_status``: the matched platform level's status converged with the
      TDX module level (dcap-qvl's ``platform_status``; for SGX and for
      ``TEE_TCB_SVN[1] == 0`` simply the level's status).
    - ``qe_status`` / ``qe_isvsvn_level``: the matched QE level's status and isvsvn.
    - ``module``: see :class:`ModuleIdentity`; ``None`` for SGX.
    - ``tcb_eval_data_number``: ``min`` of the two structures'
      ``tcbEvaluationDataNumber`` (dcap-qvl's ``tcb.eval_data_number``).
    """

    status: str
    advisory_ids: tuple[str, ...]
    tcb_date: str | None
    platform_status: str
    qe_status: str
    qe_isvsvn_level: int
    module: ModuleIdentity | None
    tcb_eval_data_number: int


# --------------------------------------------------------------------------------------
# Parsed collateral (only what the TCB evaluation needs, validated like serde would)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlatformLevel:
    sgx: tuple[int, ...]
    pcesvn: int
    tdx: tuple[int, ...]
    status: str
    date: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class _SvnLevel:
    """A QE identity or TDX module identity level: one ISVSVN threshold."""

    isvsvn: int
    status: str
    date: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class _Module:
    id: str
    mrsigner: str
    attributes: str
    attributes_mask: str
    levels: tuple[_SvnLevel, ...]


@dataclass(frozen=True)
class _TcbInfo:
    id: str
    version: int
    eval_number: int
    levels: tuple[_PlatformLevel, ...]
    tdx_module: _Module | None
    identities: tuple[_Module, ...]


@dataclass(frozen=True)
class _QeIdentity:
    id: str
    version: int
    eval_number: int
    levels: tuple[_SvnLevel, ...]


class _Reader:
    """Typed accessors over decoded JSON that raise :class:`ParseError` for ``what``."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, message: str) -> ParseError:
        return ParseError(self.what, message)

    def loads(self, text: str) -> dict[str, object]:
        def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
            out: dict[str, object] = {}
            for key, value in pairs:
                if key in out:
                    raise self.fail(f"duplicate field {key!r}")
                out[key] = value
            return out

        def no_constant(name: str) -> object:
            raise self.fail(f"invalid JSON number {name}")

        try:
            value: object = json.loads(
                text, object_pairs_hook=no_duplicates, parse_constant=no_constant
            )
        except json.JSONDecodeError as exc:
            raise ParseError(self.what, f"malformed JSON: {exc.msg}", exc.pos) from None
        except RecursionError:
            raise self.fail("malformed JSON: nested too deeply") from None
        return self.obj(value, "(top level)")

    def obj(self, value: object, path: str) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(f"{path}: expected an object")
        return value

    def field(self, parent: Mapping[str, object], key: str, path: str) -> object:
        if key not in parent:
            raise self.fail(f"{path}: missing field {key!r}")
        return parent[key]

    def string(self, parent: Mapping[str, object], key: str, path: str) -> str:
        value = self.field(parent, key, path)
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}: expected a string")
        return value

    def integer(self, parent: Mapping[str, object], key: str, path: str, maximum: int) -> int:
        value = self.field(parent, key, path)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            raise self.fail(f"{path}.{key}: expected an integer in 0..{maximum}")
        return value

    def array(self, parent: Mapping[str, object], key: str, path: str) -> list[object]:
        value = self.field(parent, key, path)
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}: expected an array")
        return value

    def optional_array(self, parent: Mapping[str, object], key: str, path: str) -> list[object]:
        return self.array(parent, key, path) if key in parent else []

    def hex_string(self, parent: Mapping[str, object], key: str, path: str, size: int) -> str:
        value = self.string(parent, key, path)
        if len(value) != 2 * size:
            raise self.fail(f"{path}.{key}: expected {2 * size} hex digits")
        try:
            bytes.fromhex(value)
        except ValueError:
            raise self.fail(f"{path}.{key}: not hex") from None
        return value.upper()

    def status(self, parent: Mapping[str, object], path: str) -> str:
        value = self.string(parent, "tcbStatus", path)
        if value not in TCB_STATUSES:
            raise self.fail(f"{path}.tcbStatus: unknown TCB status {value!r}")
        return value

    def advisories(self, parent: Mapping[str, object], path: str) -> tuple[str, ...]:
        items = self.optional_array(parent, "advisoryIDs", path)
        out: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail(f"{path}.advisoryIDs[{i}]: expected a string")
            out.append(item)
        return tuple(out)

    def components(self, parent: Mapping[str, object], key: str, path: str) -> tuple[int, ...]:
        # tdxtcbcomponents defaults to empty (an SGX level); a TDX match then fails on count.
        if key == "tdxtcbcomponents":
            items = self.optional_array(parent, key, path)
        else:
            items = self.array(parent, key, path)
        return tuple(
            self.integer(self.obj(item, f"{path}.{key}[{i}]"), "svn", f"{path}.{key}[{i}]", _U8)
            for i, item in enumerate(items)
        )

    def svn_level(self, value: object, path: str, isvsvn_max: int) -> _SvnLevel:
        level = self.obj(value, path)
        tcb = self.obj(self.field(level, "tcb", path), f"{path}.tcb")
        return _SvnLevel(
            isvsvn=self.integer(tcb, "isvsvn", f"{path}.tcb", isvsvn_max),
            date=self.string(level, "tcbDate", path),
            status=self.status(level, path),
            advisories=self.advisories(level, path),
        )


def _parse_module(r: _Reader, value: object, path: str, *, identity: bool) -> _Module:
    module = r.obj(value, path)
    levels: tuple[_SvnLevel, ...] = ()
    if identity:
        levels = tuple(
            r.svn_level(item, f"{path}.tcbLevels[{i}]", _U8)
            for i, item in enumerate(r.array(module, "tcbLevels", path))
        )
    return _Module(
        id=r.string(module, "id", path) if identity else "",
        # Lengths are checked only for the identity that is used, as dcap-qvl does.
        mrsigner=r.string(module, "mrsigner", path),
        attributes=r.string(module, "attributes", path),
        attributes_mask=r.string(module, "attributesMask", path),
        levels=levels,
    )


def _parse_tcb_info(text: str) -> _TcbInfo:
    r = _Reader(_TCB_INFO)
    top = r.loads(text)
    path = "tcbInfo"
    for key in ("issueDate", "nextUpdate", "fmspc", "pceId"):
        r.string(top, key, path)
    r.integer(top, "tcbType", path, _U32)
    levels: list[_PlatformLevel] = []
    for i, item in enumerate(r.array(top, "tcbLevels", path)):
        lpath = f"{path}.tcbLevels[{i}]"
        level = r.obj(item, lpath)
        tcb = r.obj(r.field(level, "tcb", lpath), f"{lpath}.tcb")
        levels.append(
            _PlatformLevel(
                sgx=r.components(tcb, "sgxtcbcomponents", f"{lpath}.tcb"),
                tdx=r.components(tcb, "tdxtcbcomponents", f"{lpath}.tcb"),
                pcesvn=r.integer(tcb, "pcesvn", f"{lpath}.tcb", _U16),
                date=r.string(level, "tcbDate", lpath),
                status=r.status(level, lpath),
                advisories=r.advisories(level, lpath),
            )
        )
    raw_module = top.get("tdxModule")
    tdx_module = (
        None
        if raw_module is None
        else _parse_module(r, raw_module, f"{path}.tdxModule", identity=False)
    )
    identities = tuple(
        _parse_module(r, item, f"{path}.tdxModuleIdentities[{i}]", identity=True)
        for i, item in enumerate(r.optional_array(top, "tdxModuleIdentities", path))
    )
    return _TcbInfo(
        id=r.string(top, "id", path),
        version=r.integer(top, "version", path, _U8),
        eval_number=r.integer(top, "tcbEvaluationDataNumber", path, _U32),
        levels=tuple(levels),
        tdx_module=tdx_module,
        identities=identities,
    )


def _parse_qe_identity(text: str) -> _QeIdentity:
    r = _Reader(_QE_IDENTITY)
    top = r.loads(text)
    path = "enclaveIdentity"
    for key in ("issueDate", "nextUpdate"):
        r.string(top, key, path)
    for key, size in (
        ("miscselect", 4),
        ("miscselectMask", 4),
        ("attributes", 16),
        ("attributesMask", 16),
        ("mrsigner", 32),
    ):
        r.hex_string(top, key, path, size)
    r.integer(top, "isvprodid", path, _U16)
    return _QeIdentity(
        id=r.string(top, "id", path),
        version=r.integer(top, "version", path, _U8),
        eval_number=r.integer(top, "tcbEvaluationDataNumber", path, _U32),
        levels=tuple(
            r.svn_level(item, f"{path}.tcbLevels[{i}]", _U16)
            for i, item in enumerate(r.array(top, "tcbLevels", path))
        ),
    )


def _unix_seconds(value: str, what: str) -> int:
    """An RFC 3339 date as whole Unix seconds (how dcap-qvl compares tcbDates)."""
    if _RFC3339.fullmatch(value) is None:
        raise ParseError(_TCB_INFO, f"{what}: not an RFC 3339 date: {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(_TCB_INFO, f"{what}: not an RFC 3339 date: {value!r}") from None
    return int(parsed.timestamp() // 1)


# --------------------------------------------------------------------------------------
# The algorithm
# --------------------------------------------------------------------------------------


def _converge(platform: str, component: str) -> str:
    """Intel QVL ``convergeTcbStatuses``: only an OutOfDate or Revoked component matters."""
    if component == REVOKED:
        return REVOKED
    if component == OUT_OF_DATE:
        if platform in (UP_TO_DATE, SW_HARDENING_NEEDED):
            return OUT_OF_DATE
        if platform in (CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return OUT_OF_DATE_CONFIGURATION_NEEDED
    return platform


_CONFIG_NEEDED: Final = frozenset(
    {
        CONFIGURATION_NEEDED,
        OUT_OF_DATE_CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
        TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
    }
)


def _check_for_relaunch(launch: str, current: str) -> str:
    """Intel QVL ``checkForRelaunch`` as dcap-qvl 0.7.0 implements it (TD 1.5 only)."""
    if launch in (OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED) and current in (
        UP_TO_DATE,
        SW_HARDENING_NEEDED,
        CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        if launch in _CONFIG_NEEDED or current in _CONFIG_NEEDED:
            return TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        return TD_RELAUNCH_ADVISED
    return launch


def _merge(advisories: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    out = list(advisories)
    for item in more:
        if item not in out:
            out.append(item)
    return tuple(out)


def _sorted_levels(info: _TcbInfo) -> list[_PlatformLevel]:
    """Levels in Intel QVL's order: descending, stable; TDX components break ties."""
    is_tdx = info.version >= 3 and info.id == "TDX"
    return sorted(
        info.levels,
        key=lambda lv: (list(lv.sgx), lv.pcesvn, list(lv.tdx) if is_tdx else []),
        reverse=True,
    )


def _find_platform_level(
    levels: Sequence[_PlatformLevel],
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes | None,
    which: str,
) -> _PlatformLevel:
    for level in levels:
        if pce_svn < level.pcesvn:
            continue
        if len(level.sgx) != len(cpu_svn):
            raise ParseError(
                _TCB_INFO,
                f"SGX component count mismatch: expected {len(cpu_svn)}, got {len(level.sgx)}",
            )
        if any(have < want for have, want in zip(cpu_svn, level.sgx, strict=True)):
            continue
        if tee_tcb_svn is not None:
            if len(level.tdx) != len(tee_tcb_svn):
                raise ParseError(
                    _TCB_INFO,
                    f"TDX component count mismatch: expected {len(tee_tcb_svn)}, "
                    f"got {len(level.tdx)}",
                )
            # With a non-zero module version, indices 0 and 1 belong to the module identity.
            skip = 2 if tee_tcb_svn[1] > 0 else 0
            pairs = zip(tee_tcb_svn[skip:], level.tdx[skip:], strict=True)
            if any(have < want for have, want in pairs):
                continue
        if level.status not in _PLATFORM_STATUSES:
            raise TcbStatusUnrecognized(f"unrecognized TCB status {level.status} in TCB info")
        return level
    raise TcbNotSupported(f"no matching TCB level found for {which}")


def _module_identity(info: _TcbInfo, tee_tcb_svn: bytes) -> _Module | None:
    version = tee_tcb_svn[1]
    if version == 0:
        return None
    wanted = f"TDX_{version:02X}"
    for identity in info.identities:
        if identity.id.isascii() and identity.id.upper() == wanted:  # eq_ignore_ascii_case
            return identity
    raise TcbNotSupported(f"no TDX module identity with id {wanted} in TCB info", step="tdx_module")


@dataclass(frozen=True)
class _TdxResult:
    status: str
    advisories: tuple[str, ...]
    date: str
    module: _Module | None
    module_level: _SvnLevel | None


def _evaluate_tdx(
    info: _TcbInfo,
    levels: Sequence[_PlatformLevel],
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes,
    which: str,
) -> _TdxResult:
    level = _find_platform_level(levels, cpu_svn, pce_svn, tee_tcb_svn, which)
    module = _module_identity(info, tee_tcb_svn)
    if module is None:
        return _TdxResult(level.status, level.advisories, level.date, None, None)
    module_svn = tee_tcb_svn[0]
    module_level = next((lv for lv in module.levels if module_svn >= lv.isvsvn), None)
    if module_level is None:
        raise TcbNotSupported(
            f"TDX module ISVSVN {module_svn} ({which}[0]) is below every level of {module.id}",
            step="tdx_module",
        )
    if module_level.status not in _MODULE_STATUSES:
        raise TcbStatusUnrecognized(
            f"unrecognized TCB status {module_level.status} in TDX module identity",
            step="tdx_module",
        )
    date = level.date
    module_time = _unix_seconds(module_level.date, f"{module.id} tcbDate")
    if module_time < _unix_seconds(level.date, "tcbLevels tcbDate"):
        date = module_level.date
    return _TdxResult(
        status=_converge(level.status, module_level.status),
        advisories=_merge(level.advisories, module_level.advisories),
        date=date,
        module=module,
        module_level=module_level,
    )


def _match_qe_level(qe: _QeIdentity, qe_isvsvn: int) -> _SvnLevel:
    for level in qe.levels:  # JSON order, as dcap-qvl: not re-sorted
        if qe_isvsvn >= level.isvsvn:
            if level.status not in _QE_STATUSES:
                raise TcbStatusUnrecognized(
                    f"unrecognized TCB status {level.status} in QE identity"
                )
            return level
    if not qe.levels:
        raise TcbNotSupported("no TCB levels in QE identity")
    raise TcbNotSupported(f"QE ISVSVN {qe_isvsvn} is below minimum required {qe.levels[-1].isvsvn}")


def _check_svn(name: str, value: bytes | None) -> bytes:
    if value is None or len(value) != _SVN_COUNT:
        raise ValueError(f"{name} must be {_SVN_COUNT} bytes")
    return bytes(value)


def evaluate_tcb(
    *,
    tee: Literal["tdx", "sgx"],
    tcb_info_json: str,
    qe_identity_json: str,
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes | None,
    tee_tcb_svn2: bytes | None,
    qe_isvsvn: int,
) -> TcbEvaluation:
    """Evaluate the TCB of a quote exactly as dcap-qvl 0.7.0 does.

    ``tcb_info_json`` / ``qe_identity_json`` are the signed texts (the values of
    ``tcbInfo`` / ``enclaveIdentity``, as in dcap-qvl's ``QuoteCollateralV3``),
    already verified.  ``cpu_svn`` (16 bytes, the PCK extension's CPUSVN octet
    string) and ``pce_svn`` come from the PCK certificate; ``tee_tcb_svn`` (TDX,
    16 bytes), ``tee_tcb_svn2`` (TD 1.5 bodies only) and ``qe_isvsvn`` (the QE
    report's ISVSVN) from the quote.  For SGX both TEE SVNs must be ``None``.

    Raises :class:`ParseError` ("tcb info" / "qe identity") for malformed or
    structurally wrong JSON, :class:`VerificationError` (step "tcb_info" or
    "qe_identity") when a structure's id/version does not fit ``tee``,
    :class:`TcbNotSupported` and :class:`TcbStatusUnrecognized` as documented
    there, and :class:`ValueError` for arguments of the wrong shape.
    """
    if tee not in ("tdx", "sgx"):
        raise ValueError(f"unknown tee {tee!r}")
    if len(cpu_svn) != _SVN_COUNT:
        raise ValueError(f"cpu_svn must be {_SVN_COUNT} bytes")
    if not 0 <= pce_svn <= _U16:
        raise ValueError("pce_svn must fit in 16 bits")
    if not 0 <= qe_isvsvn <= _U16:
        raise ValueError("qe_isvsvn must fit in 16 bits")
    launch_svn: bytes | None = None
    current_svn: bytes | None = None
    if tee == "tdx":
        launch_svn = _check_svn("tee_tcb_svn", tee_tcb_svn)
        if tee_tcb_svn2 is not None:
            current_svn = _check_svn("tee_tcb_svn2", tee_tcb_svn2)
    elif tee_tcb_svn is not None or tee_tcb_svn2 is not None:
        raise ValueError("an SGX quote has no TEE_TCB_SVN")

    info = _parse_tcb_info(tcb_info_json)
    qe = _parse_qe_identity(qe_identity_json)
    if tee == "tdx" and (info.id != "TDX" or info.version < 3):
        raise VerificationError("tcb_info", "TDX quote with non-TDX TCB info")
    if tee == "sgx" and (info.id != "SGX" or info.version < 2):
        raise VerificationError("tcb_info", "SGX quote with non-SGX TCB info")
    expected_qe, qe_versions = ("TD_QE", (2, 3)) if tee == "tdx" else ("QE", (2,))
    if qe.id != expected_qe or qe.version not in qe_versions:
        raise VerificationError(
            "qe_identity",
            f"unsupported QE identity {qe.id} version {qe.version} for a {tee.upper()} quote",
        )

    # dcap-qvl's order: QE level, platform level (launch), tdxModule, current TCB.
    qe_level = _match_qe_level(qe, qe_isvsvn)
    levels = _sorted_levels(info)
    cpu = bytes(cpu_svn)
    module_out: ModuleIdentity | None = None
    current_status: str | None = None
    if launch_svn is None:
        level = _find_platform_level(levels, cpu, pce_svn, None, "the PCK TCB")
        launch = _TdxResult(level.status, level.advisories, level.date, None, None)
    else:
        launch = _evaluate_tdx(info, levels, cpu, pce_svn, launch_svn, "TEE_TCB_SVN")
        module_out = _describe_module(info, launch)
        if current_svn is not None:
            current = _evaluate_tdx(info, levels, cpu, pce_svn, current_svn, "TEE_TCB_SVN2")
            current_status = _converge(current.status, qe_level.status)

    status = _converge(launch.status, qe_level.status)
    if REVOKED in (status, current_status):
        status = REVOKED  # dcap-qvl raises "TCB status is invalid: Revoked" here
    elif current_status is not None:
        status = _check_for_relaunch(status, current_status)
    return TcbEvaluation(
        status=status,
        advisory_ids=_merge(launch.advisories, qe_level.advisories),
        tcb_date=launch.date,
        platform_status=launch.status,
        qe_status=qe_level.status,
        qe_isvsvn_level=qe_level.isvsvn,
        module=module_out,
        tcb_eval_data_number=min(info.eval_number, qe.eval_number),
    )


def _describe_module(info: _TcbInfo, launch: _TdxResult) -> ModuleIdentity:
    """The applied module identity, with dcap-qvl's hex checks on the one used."""
    if info.tdx_module is None:
        raise ParseError(_TCB_INFO, "TDX TCB info is missing the tdxModule field")
    r = _Reader(_TCB_INFO)
    module = launch.module if launch.module is not None else info.tdx_module
    path = "tdxModuleIdentities" if launch.module is not None else "tdxModule"
    fields: dict[str, object] = {
        "mrsigner": module.mrsigner,
        "attributes": module.attributes,
        "attributesMask": module.attributes_mask,
    }
    mrsigner = r.hex_string(fields, "mrsigner", path, 48)
    r.hex_string(fields, "attributes", path, 8)
    r.hex_string(fields, "attributesMask", path, 8)
    level = launch.module_level
    if launch.module is None or level is None:
        return ModuleIdentity(
            id="TDX_00",
            mrsigner=mrsigner,
            isvsvn=None,
            tcb_status=None,
            tcb_date=None,
            advisory_ids=(),
        )
    return ModuleIdentity(
        id=launch.module.id.upper(),
        mrsigner=mrsigner,
        isvsvn=level.isvsvn,
        tcb_status=level.status,
        tcb_date=level.date,
        advisory_ids=level.advisories,
    )
