"""What runs on the node itself. nodecheck.py is baked into the image verbatim from its file:
it stays one stdlib-only module that imports nothing from bakery."""
