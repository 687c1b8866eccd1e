"""Programs built on the rest: the web page and its API (`serve.py`, the WebSocket
`serve_stream.py`, `static/`), the demo (`demo.py`: synth -> shards -> train -> eval) and the
figures (`plot.py`). The top floor: nothing in asr/ imports from here."""
