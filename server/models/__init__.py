"""The protocol-independent core: model store, registry of models and versions."""
