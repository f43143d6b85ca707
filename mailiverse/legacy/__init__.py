"""The legacy Mailiverse protocol (opt-in): KeyServer and MailServer line protocols, MV Store API and Send.

``service.build_legacy`` assembles it; see ``docs/legacy.md`` for what is covered.
"""
