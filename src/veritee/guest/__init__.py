"""The guest side (the RATS attester role): what runs inside the TEE.

``attesters`` read evidence from the TEE's kernel interfaces (configfs-tsm, the
``/dev/tdx_guest`` and ``/dev/sev-guest`` ioctls, Gramine's ``/dev/attestation``),
``eventlog`` keeps the Attestation Agent's event log (AAEL), ``aa`` is the
Attestation Agent, ``cdh`` the Confidential Data Hub, ``kbs_client`` the RCAR
client both use to reach a KBS, and ``api`` the local REST API on 127.0.0.1:8006
that workloads call, as guest-components' api-server-rest does.
"""
