"""Model builders: keyword-only functions that assemble a backbone and a head into a
``Segmentor`` (the registry maps names to them)."""
