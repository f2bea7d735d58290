"""Everything that talks to the chain; the rest of the bridge does not import web3."""
