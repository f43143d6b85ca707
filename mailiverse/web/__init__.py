"""mailiverse.web: the HTTPS API, the web client's files and the legacy branch.

Twisted's ``File`` (the client's files, ``routes/public.py``) reads the system's MIME table (/etc/mime.types)
when ``twisted.web.static`` is first imported: about 350 KiB kept for good, and different on every machine.
The package clears the list of files to read before any of its modules imports it; the client's types are
pinned on ``_StaticFiles``.
"""

import mimetypes

mimetypes.knownfiles = []
