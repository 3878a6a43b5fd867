"""Authentication of the admin APIs."""
