"""The user's models: the registry and the scan of other tools' folders."""
