"""Protocol adapters: parse a request, call the core, render the response or error. Nothing else."""
