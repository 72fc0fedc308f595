"""Who may command a node: Ed25519-signed commands, scopes, replay protection, file checks."""
