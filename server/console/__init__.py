"""The console's server side: log files, system samples, archive uploads (routes in `server.api.console`)."""
