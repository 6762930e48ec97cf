"""Feature extractors beyond the log-mel front end (e.g. song-level essentia descriptors).

Each extractor is a plain module of functions over decoded audio; the plugin hooks
register them.
"""
