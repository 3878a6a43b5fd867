"""Container images behind attestation (image-rs's role inside the CDH): references, the OCI
distribution client, the image security policy and signatures, encrypted layers and the
ocicrypt key provider, safe unpacking, and the gated pull that ties them together."""
