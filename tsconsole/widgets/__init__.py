"""The console's widgets, one a module; each widget's messages are nested in its class."""
