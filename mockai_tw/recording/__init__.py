"""Record and replay: capture a real provider once, serve it byte-exact after.

The pure parts live here -- field paths (``paths``, a leaf the config schema
uses), the provider table, match keys, redaction (``policy``), the file
format, the replay book and promotion to a rule -- and know nothing of
Twisted or HTTP.  Forwarding upstream and delivering a replay are the web
layer's (``mockai_tw/web/proxy.py``).  Import from the modules: this package
loads nothing, so the config schema can use ``paths`` alone.
"""
