"""One module per panel of the main window; each is created the first time it is shown."""
