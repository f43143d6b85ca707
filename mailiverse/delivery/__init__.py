"""mailiverse.delivery"""
