"""Point-in-time person features from silver events, and the labels that follow them."""
