"""Emulated TEEs: real evidence formats signed under a generated test root of trust.

Nothing here is trusted by a verifier unless the test root is configured
explicitly (``--trust-root DIR``); evidence verified under it is marked
``"emulated": true`` in its claims.
"""
