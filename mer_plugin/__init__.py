"""mer: music emotion recognition that tags your music library."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mer-plugin")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
