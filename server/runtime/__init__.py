"""Worker processes, their pool, the batcher and the frame protocol between frontend and workers."""
