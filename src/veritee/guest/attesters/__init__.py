"""Attesters: one module per TEE behind :class:`~veritee.guest.attesters.base.Attester`."""
