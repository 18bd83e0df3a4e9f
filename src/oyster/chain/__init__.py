"""The reasoning chain (docs/decisions.md): needs → risk intent → guidelines → strategies."""

from oyster.chain.build import Chain, build_chain, render_instructions

__all__ = ["Chain", "build_chain", "render_instructions"]
