"""The key directory's transparency log: RFC 9162 Merkle tree hashes and proofs, and signed tree heads.

Pure building blocks (stdlib and ``cryptography`` only, no I/O, no Twisted, no database), so the appliance that
keeps the log and every client that checks it run the same few, well-tested functions. docs/transparency.md
describes the log and how an outside verifier checks it.
"""
