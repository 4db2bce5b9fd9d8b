"""The request checks every front door shares: CSRF tokens, requests made by
another site's page, and the security headers of the answers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Dict, Optional
from urllib.parse import urlsplit

__all__ = ["ACTIONS", "CSRF_FIELD", "CSRF_HEADER", "CSRF_MESSAGE", "tokens_match", "origin_of",
           "requested_by_another_site", "cross_origin_post", "security_headers", "new_nonce",
           "SignedTokens"]

#: The views that change the profiler's state.
ACTIONS = frozenset({"pause", "unpause", "reset", "set_interval"})
#: The form field and the header that carry the CSRF token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-OxProf-CSRF"
#: The 400 answer's message when the token is missing or wrong.
CSRF_MESSAGE = ("The form's CSRF token is missing or invalid: reload the page and try again "
                "(POSTs need the csrf_token of this session).")

#: ``Sec-Fetch-Site`` values of requests a person made on this site: typed,
#: bookmarked (``none``) or from its own pages.
_OWN_SITE = frozenset({"none", "same-origin"})


def tokens_match(expected: Optional[str], sent: Optional[str]) -> bool:
    """Whether a sent CSRF token is the expected one (constant time; empty never matches)."""
    if not expected or not sent:
        return False
    return hmac.compare_digest(str(expected).encode(), str(sent).encode())


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-case."""
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme.lower(), parts.netloc.lower())


#: The refusal of an action another site's page asked for: (message, what to do).
CROSS_SITE_REFUSAL = ("This action was requested by a page of another site, and was not done.",
                      "Use the buttons of the ox_profile status page, or open the link yourself "
                      "(typed or bookmarked).")


def action_refusal(method: str, csrf_valid: bool, sec_fetch_site: Optional[str], referer: Optional[str],
                   host_url: str) -> Optional[str]:
    """Why a request to an action (pause, unpause, reset, set_interval) may
    not act, or None: ``"csrf"`` (a POST without the session's token),
    ``"another site"`` (the original's GET link, followed from another
    site's page) or ``"method"`` (HEAD and the rest never act)."""
    if method == "POST":
        return None if csrf_valid else "csrf"
    if method == "GET":
        return "another site" if requested_by_another_site(sec_fetch_site, referer, host_url) else None
    return "method"


def method_refusal(method: str) -> str:
    """The text of a 405 to a method that runs no action."""
    return "%s does not run ox_profile actions; use POST (the status page's buttons) or GET.\n" % method


def requested_by_another_site(sec_fetch_site: Optional[str], referer: Optional[str], host_url: str) -> bool:
    """Whether the browser says the request was made by another site's page
    (``Sec-Fetch-Site``; browsers without it: a ``Referer`` from another origin)."""
    if sec_fetch_site is not None:
        return sec_fetch_site.strip().lower() not in _OWN_SITE
    if not referer:
        return False
    return origin_of(referer) != origin_of(host_url)


def cross_origin_post(origin: Optional[str], sec_fetch_site: Optional[str], referer: Optional[str],
                      host_url: str) -> bool:
    """Whether a POST comes from another origin: its ``Origin`` header names
    another one, or the browser says another site made it."""
    sent = (origin or "").strip()
    if sent.lower() == "null":
        return True  # sandboxed or privacy-stripped: not our own page
    if sent and origin_of(sent) != origin_of(host_url):
        return True
    return requested_by_another_site(sec_fetch_site, referer, host_url)


def new_nonce() -> str:
    """A fresh script nonce for one page."""
    return secrets.token_urlsafe(16)


def security_headers(content_type: str, attachment: bool, nonce: str) -> Dict[str, str]:
    """The headers every answer gets (a strict CSP on HTML pages)."""
    headers = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
               "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
    if content_type.split(";")[0].strip() == "text/html" and not attachment:
        headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'nonce-%s'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'" % nonce)
    return headers


class SignedTokens:
    """CSRF tokens for front doors without sessions (ASGI): a random value
    and its HMAC under a per-process secret, kept in a cookie and repeated in
    each form.  A token planted in the cookie by someone without the secret
    does not verify."""

    def __init__(self, secret: Optional[bytes] = None) -> None:
        self._secret = secret if secret else secrets.token_bytes(32)

    def _sign(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    def new(self) -> str:
        """A fresh token."""
        value = secrets.token_urlsafe(18)
        return value + "." + self._sign(value)

    def valid(self, token: Optional[str]) -> bool:
        """Whether ``token`` was made with this secret."""
        return self.unsign(token, 200) is not None

    def sign(self, value: str) -> str:
        """``value`` (without dots) with its signature."""
        return value + "." + self._sign(value)

    def unsign(self, signed: Optional[str], limit: int = 4096) -> Optional[str]:
        """The value of a string made by :meth:`sign` with this secret, else None."""
        if not signed or signed.count(".") != 1 or len(signed) > limit:
            return None
        value, signature = signed.split(".")
        if not hmac.compare_digest(self._sign(value).encode(), signature.encode("utf-8", "replace")):
            return None
        return value
