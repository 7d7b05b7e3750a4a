"""How good and how fast: metrics, evaluation on labelled faces, quality on real clips against Face
Mesh (the one reference), benchmarks."""
