"""mailiverse.compat"""
