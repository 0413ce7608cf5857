"""An independent implementation of mkosi, the tool that builds bespoke OS images."""

__version__ = "27.1"
