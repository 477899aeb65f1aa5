"""Infrastructure stacks: changed-stack detection, a parallel runner under locks, drift."""
