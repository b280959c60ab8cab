"""Keys and scopes, the bootstrap admin key."""
