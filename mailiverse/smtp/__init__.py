"""mailiverse.smtp"""
