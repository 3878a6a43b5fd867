"""veritee: remote attestation and key brokering for confidential containers."""

__version__ = "0.1.0"

__all__ = ["__version__"]
