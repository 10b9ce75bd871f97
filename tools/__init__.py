"""Tools around the product that are not part of it: the standalone cluster harness."""
