"""On-device learning (TinyOL, issue 15 item 4), service side: the TMLH head codec, the trainable-head option of
the int8 back-end, and turning a learned head back into a plain int8 blob (docs/learning.md)."""
