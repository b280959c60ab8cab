"""The data plane: resolve a name to a version, keep versions loaded, run inference off the event loop."""
