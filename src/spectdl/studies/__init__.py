"""One module per published study, plus the demo: a config and a runner that chains
simulate → reconstruct → train → evaluate → report."""
