"""An example mer plugin: WavPack (`.wv`) files decoded with PyAV, tagged with mutagen."""
