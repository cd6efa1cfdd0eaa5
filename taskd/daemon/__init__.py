"""The composition root of ``taskd serve`` and its process plumbing (sd_notify, loop lag, heap)."""
