"""A file's faces seen whole: tracks smoothed without lag, blinks, eye and mouth measures."""
