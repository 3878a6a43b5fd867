"""EAR attestation tokens: build, sign, publish keys, verify."""
