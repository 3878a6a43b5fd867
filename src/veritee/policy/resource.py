"""KBS resource policies: may these attestation claims have this resource?

Trustee's rule (``deps/policy-engine``, KBS ≥ v0.17): ``input`` is the verified
token's claims, ``data`` is ``{"plugin": "resource", "resource-path": [repo,
type, tag], "query": {...}}`` and ``data.policy.allow`` must be boolean
``true`` to release; undefined or any other value denies.  KBS ≤ v0.16 gave
``data = {"resource-path": "<repo>/<type>/<tag>"}`` instead
(``legacy_data=True``).

rego-cpp compiles ``data`` into the bundle, so a :class:`ResourcePolicy`
checks its text once and keeps one compiled bundle per distinct resource
request (a small LRU), each built on first use.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping

from veritee.policy.engine import (
    JSON,
    CompiledQuery,
    PolicyError,
    compile_policy,
    evaluate,
)
from veritee.policy.projection import projected_input
from veritee.policy.pruning import pruned_input

__all__ = ["RESOURCE_POLICY_ID", "ResourcePolicy"]

#: The id Trustee's KBS stores its resource policy under.
RESOURCE_POLICY_ID = "resource-policy"

_QUERY = "allow := [v | v := data.policy.allow]"
_OUTPUTS = frozenset({"allow"})


class ResourcePolicy:
    """One compiled resource policy.

    ``text`` must be a Rego module in ``package policy``; a policy that does not
    compile raises :class:`PolicyError` (with line and column).  ``cache_size``
    bounds the number of per-resource bundles kept.
    """

    def __init__(
        self,
        text: str,
        *,
        legacy_data: bool = False,
        policy_id: str = RESOURCE_POLICY_ID,
        cache_size: int = 256,
    ) -> None:
        compile_policy(policy_id, text)
        self.text = text
        self.policy_id = policy_id
        self.legacy_data = legacy_data
        self._module = (f"{policy_id}.rego", text)
        self._cache_size = max(1, cache_size)
        self._bundles: OrderedDict[str, CompiledQuery] = OrderedDict()
        self._lock = threading.Lock()

    def data(
        self, *, repository: str, type_: str, tag: str, query: Mapping[str, str]
    ) -> dict[str, JSON]:
        """The ``data`` document the policy sees for this request."""
        if self.legacy_data:
            return {"resource-path": f"{repository}/{type_}/{tag}"}
        return {
            "plugin": "resource",
            "resource-path": [repository, type_, tag],
            "query": {str(k): str(v) for k, v in query.items()},
        }

    def _compiled(self, data: dict[str, JSON]) -> CompiledQuery:
        key = json.dumps(data, sort_keys=True, separators=(",", ":"))
        with self._lock:
            compiled = self._bundles.get(key)
            if compiled is not None:
                self._bundles.move_to_end(key)
                return compiled
        compiled = CompiledQuery([self._module], _QUERY, data=data, policy_id=self.policy_id)
        with self._lock:
            self._bundles[key] = compiled
            self._bundles.move_to_end(key)
            while len(self._bundles) > self._cache_size:
                self._bundles.popitem(last=False)
        return compiled

    def allows(
        self,
        claims: JSON,
        *,
        repository: str,
        type_: str,
        tag: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether ``data.policy.allow`` is exactly ``true`` for ``claims`` and
        this resource.  Evaluation errors raise :class:`PolicyError`."""
        data = self.data(repository=repository, type_=type_, tag=tag, query=query or {})
        reduced = projected_input(self.text, claims, outputs=_OUTPUTS)
        bindings = evaluate(self._compiled(data), pruned_input(self.text, claims)
                            if reduced is None else reduced)
        values = bindings.get("allow")
        if not isinstance(values, list):
            raise PolicyError(self.policy_id, "unreadable policy result")
        return bool(values) and values[0] is True
