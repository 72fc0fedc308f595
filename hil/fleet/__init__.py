"""A simulated fleet on the broker: N vehicles publishing the contract on real routes."""
