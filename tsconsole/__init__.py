"""tsconsole: the command line and terminal console of the tsconsole model server."""

__version__ = "0.1.0"
