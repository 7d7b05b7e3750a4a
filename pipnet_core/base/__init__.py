"""What every stage uses and that uses no stage: the face record, geometry, the one crop, the point
scheme, errors, closing, the version."""
