"""Diffusion: noise schedule, multi-level training inputs, training loop with full resume, model folders,
and (in sibling modules) the samplers that run the reverse process (paper 3.2-3.3, eqs. 1-6)."""
