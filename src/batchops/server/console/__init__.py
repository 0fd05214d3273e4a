"""The jobs console: a small server-rendered web UI at ``/console`` (see docs/console.md).

``router`` (the pages and actions, over the services the API routes use), ``session``
(sign-in with an API key kept in an HttpOnly, SameSite=Strict cookie; the same-origin
check of every form post), ``templates/`` (Jinja2) and ``static/`` (the page's own script
and style; nothing is loaded from another origin).
"""
