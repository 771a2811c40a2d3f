"""Prints what python gives a script (__file__, argv, sys.path, __main__ globals), then changes directory and
reads a file next to itself through Path(__file__), as scripts that load their own config do."""

import os
import pickle
import sys
from pathlib import Path


class Config:
    pass


print("file", __file__)
print("argv", sys.argv)
print("path", sys.path[:2])
print("globals", __name__, repr(__package__), __spec__, type(__builtins__).__name__, type(__loader__).__name__)
print("pickled class from", pickle.loads(pickle.dumps(Config())).__class__.__module__)
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
print("config", (Path(__file__).parent / "config.txt").read_text().strip())
