"""`asr-cli`'s commands, one module per stage (cli.py assembles them into one app)."""
