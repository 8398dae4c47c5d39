"""Model builders: keyword-only functions that assemble a backbone and a head into a
:class:`~atrous.models.segmentor.Segmentor` (the registry maps names to them)."""
