"""Certificates from an ACME CA (RFC 8555) with HTTP-01 challenges answered by the appliance itself."""
