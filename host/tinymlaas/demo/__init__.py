"""`tinymlaas demo`: the whole service on one machine — see run.py."""
