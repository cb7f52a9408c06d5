"""The console's top-level screens (one module each); the app lists them in ``tsconsole.app.SCREENS_TABLE``."""
