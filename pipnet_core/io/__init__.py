"""Media in and files out: the media registry, the still reader, frame sources, label files, files
written whole, state files, packaged resources."""
