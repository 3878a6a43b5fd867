"""Rego policies: attestation policies that produce AR4SI trust vectors, and resource policies."""
