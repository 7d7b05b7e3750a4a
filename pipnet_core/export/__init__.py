"""Faces out to files: the rows every format writes, the writers, drawing, `pipnet annotate` and
its cluster path."""
