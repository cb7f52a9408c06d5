"""The worker-side handler API: everything that runs inside a worker process.

TorchServe-compatible: `Context`, `BaseHandler`, the built-in handlers (image_classifier, image_segmenter,
object_detector, text_classifier), `ts.utils.util` helpers, a metrics cache, and `service.HandlerService`,
which the worker process uses to load a handler and run batches. `compat.install()` makes
``import ts.torch_handler...`` resolve to these modules when the real TorchServe package is absent.

This package is imported only inside workers (it may import torch); the frontend never imports it.
Importing the package itself is cheap: torch is imported by the submodules that need it.
"""
