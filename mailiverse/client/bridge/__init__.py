"""``mailiverse-client bridge``: standard IMAP and SMTP on the user's own machine, decrypting there (docs/bridge.md)."""
