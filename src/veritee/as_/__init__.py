"""The Attestation Service: verified evidence in, an EAR token out."""
