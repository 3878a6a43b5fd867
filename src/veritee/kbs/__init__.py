"""The Key Broker Service: Trustee's RCAR protocol, resources, policies and admin API."""
