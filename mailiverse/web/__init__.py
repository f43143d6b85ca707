"""mailiverse.web"""
