"""mailiverse.crypto"""
