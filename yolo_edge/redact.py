"""Credentials never leave the process in clear text: ``rtsp://admin:secret@cam/stream`` is shown
as ``rtsp://admin:***@cam/stream`` in errors, logs, the overlay, summaries and JSON Lines.

:func:`redact_url` is the one helper; the stream layer applies it to every source/sink name it
shows, and the CLI's error boundary to every message it prints (in case a URL got into one from
elsewhere, such as a GStreamer pipeline string or a library's exception).
"""

from __future__ import annotations

import re

# scheme://user:password@host  or  scheme://token@host (a lone userinfo is often a token)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/'\"?#]+)@")
MASK = "***"


def _mask(m: re.Match) -> str:
    userinfo = m.group("userinfo")
    user, sep, _password = userinfo.partition(":")
    # user:password keeps the user name (useful to tell cameras apart); a bare token is hidden whole
    return f"{m.group('scheme')}{user}:{MASK}@" if sep else f"{m.group('scheme')}{MASK}@"


def redact_url(text) -> str:
    """``text`` with the password (or token) of every ``scheme://userinfo@host`` URL in it replaced by ``***``.

    Works on a bare URL, on a GStreamer pipeline holding one (``rtspsrc location=rtsp://u:p@h``) and on
    a whole message. Text without credentials is returned unchanged.
    """
    s = str(text)
    if "@" not in s or "://" not in s:
        return s
    return _USERINFO.sub(_mask, s)
