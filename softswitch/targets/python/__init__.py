"""The python target: P4 compiled to Python source, run in-process (the reference semantics)."""
