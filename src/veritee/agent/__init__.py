"""Guest side: the Attestation Agent, the Confidential Data Hub, initdata and the event log."""
