"""A folder run as a script: prints what python gives its __main__ module."""

import sys

print("file", __file__)
print("argv", sys.argv)
print("path", sys.path[:2])
print("globals", __name__, repr(__package__), __spec__.name, type(__loader__).__name__, __spec__.origin)
